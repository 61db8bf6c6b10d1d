//! Recognising `CREATE INDEX CONCURRENTLY` statements, and finding and
//! dropping the INVALID indexes that a failed concurrent build leaves behind.

use tokio_postgres::Client;

use crate::split::{is_ident_byte, skip_block_comment, skip_double_quoted, skip_line_comment};

/// PostgreSQL truncates identifiers to `NAMEDATALEN - 1` bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// A `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON [ONLY] table`
/// statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConcurrentIndex {
    /// The index name as PostgreSQL stores it (case-folded or unquoted).
    pub(crate) name: String,
    /// The table name as written (possibly quoted and schema-qualified),
    /// suitable for `to_regclass`.
    pub(crate) table: String,
}

impl ConcurrentIndex {
    /// Recognises a named concurrent index build; anything else (including an
    /// unnamed `CREATE INDEX CONCURRENTLY ON t ...`) gives `None`.
    pub(crate) fn parse(statement: &str) -> Option<Self> {
        let mut tokens = Tokens {
            sql: statement,
            pos: 0,
            last_was_quoted: false,
        };
        tokens.keyword("create")?;
        tokens.keyword("unique");
        tokens.keyword("index")?;
        tokens.keyword("concurrently")?;
        if tokens.keyword("if").is_some() {
            tokens.keyword("not")?;
            tokens.keyword("exists")?;
        }
        let name = tokens.identifier()?;
        if name.eq_ignore_ascii_case("on") && !tokens.last_was_quoted {
            return None;
        }
        tokens.keyword("on")?;
        tokens.keyword("only");
        tokens.skip_trivia();
        let table_start = tokens.pos;
        tokens.identifier()?;
        let mut table_end = tokens.pos;
        while tokens.punct(b'.') {
            tokens.identifier()?;
            table_end = tokens.pos;
        }
        let table = statement[table_start..table_end].to_owned();
        Some(Self { name, table })
    }
}

/// A minimal tokenizer over the head of a statement.
struct Tokens<'a> {
    sql: &'a str,
    pos: usize,
    last_was_quoted: bool,
}

impl Tokens<'_> {
    fn skip_trivia(&mut self) {
        let bytes = self.sql.as_bytes();
        loop {
            while self.pos < bytes.len() && bytes[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            let rest = &bytes[self.pos..];
            if rest.starts_with(b"--") {
                self.pos = skip_line_comment(bytes, self.pos);
            } else if rest.starts_with(b"/*") {
                self.pos = skip_block_comment(bytes, self.pos);
            } else {
                return;
            }
        }
    }

    /// The next identifier, folded as PostgreSQL folds it.
    fn identifier(&mut self) -> Option<String> {
        self.skip_trivia();
        let bytes = self.sql.as_bytes();
        let start = self.pos;
        let first = *bytes.get(start)?;
        let name = if first == b'"' {
            // A doubled quote stands for one quote; the scan stops at each
            // half of it, so keep scanning while another quote follows.
            let mut end = skip_double_quoted(bytes, start);
            while bytes.get(end) == Some(&b'"') {
                end = skip_double_quoted(bytes, end);
            }
            if end <= start + 2 || bytes[end - 1] != b'"' {
                return None;
            }
            self.pos = end;
            self.last_was_quoted = true;
            self.sql[start + 1..end - 1].replace("\"\"", "\"")
        } else if first.is_ascii_alphabetic() || first == b'_' || first >= 0x80 {
            let mut end = start;
            while end < bytes.len() && is_ident_byte(bytes[end]) {
                end += 1;
            }
            self.pos = end;
            self.last_was_quoted = false;
            self.sql[start..end].to_ascii_lowercase()
        } else {
            return None;
        };
        Some(truncate_identifier(name))
    }

    /// Consumes the keyword if it comes next.
    fn keyword(&mut self, keyword: &str) -> Option<()> {
        let saved = (self.pos, self.last_was_quoted);
        match self.identifier() {
            Some(word) if !self.last_was_quoted && word == keyword => Some(()),
            _ => {
                (self.pos, self.last_was_quoted) = saved;
                None
            }
        }
    }

    /// Consumes the punctuation byte if it comes next.
    fn punct(&mut self, byte: u8) -> bool {
        self.skip_trivia();
        if self.sql.as_bytes().get(self.pos) == Some(&byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
}

fn truncate_identifier(mut name: String) -> String {
    if name.len() > MAX_IDENTIFIER_BYTES {
        let mut end = MAX_IDENTIFIER_BYTES;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

/// If the index exists (in the schema of its table) and is INVALID, its
/// quoted, schema-qualified name.
pub(crate) async fn find_invalid(
    client: &Client,
    index: &ConcurrentIndex,
) -> Result<Option<String>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
             FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname::text = $1 \
               AND NOT i.indisvalid \
               AND c.relnamespace = (SELECT t.relnamespace FROM pg_catalog.pg_class t \
                                     WHERE t.oid = pg_catalog.to_regclass($2))",
            &[&index.name, &index.table],
        )
        .await?;
    row.map(|row| row.try_get(0)).transpose()
}

/// Drops an index without blocking writes to its table.
pub(crate) async fn drop_concurrently(
    client: &Client,
    qualified_name: &str,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {qualified_name}"
        ))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Option<(String, String)> {
        ConcurrentIndex::parse(sql).map(|i| (i.name, i.table))
    }

    fn some(name: &str, table: &str) -> Option<(String, String)> {
        Some((name.to_owned(), table.to_owned()))
    }

    #[test]
    fn recognises_concurrent_index_builds() {
        assert_eq!(
            parse("CREATE INDEX CONCURRENTLY IF NOT EXISTS leads_idx ON leads (org_id)"),
            some("leads_idx", "leads")
        );
        assert_eq!(
            parse(
                "-- why\n/* c */ create unique index concurrently Foo_Key on only public.Things(code)"
            ),
            some("foo_key", "public.Things")
        );
        assert_eq!(
            parse(r#"CREATE INDEX CONCURRENTLY "My ""Idx""" ON "S"."T" USING btree (a)"#),
            some(r#"My "Idx""#, r#""S"."T""#)
        );
        assert_eq!(
            parse("CREATE INDEX CONCURRENTLY on_idx ON t(a)"),
            some("on_idx", "t")
        );
    }

    #[test]
    fn ignores_other_statements() {
        for sql in [
            "CREATE INDEX leads_idx ON leads (org_id)",
            "CREATE INDEX CONCURRENTLY ON leads (org_id)",
            "CREATE TABLE t (a int)",
            "DROP INDEX CONCURRENTLY IF EXISTS leads_idx",
            "REINDEX INDEX CONCURRENTLY leads_idx",
            "CREATE INDEX CONCURRENTLY IF EXISTS x ON t (a)",
            "",
        ] {
            assert_eq!(parse(sql), None, "{sql}");
        }
    }

    #[test]
    fn truncates_long_names_like_postgres() {
        let long = "a".repeat(70);
        let sql = format!("CREATE INDEX CONCURRENTLY {long} ON t (a)");
        assert_eq!(parse(&sql), some(&"a".repeat(63), "t"));
    }
}
