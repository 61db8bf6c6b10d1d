//! Splitting a SQL script into statements.
//!
//! PostgreSQL runs a multi-statement simple-query string as one implicit
//! transaction, in which `CREATE INDEX CONCURRENTLY` fails. A
//! `-- no-transaction` migration is therefore split here and sent one
//! statement at a time.

/// Splits a SQL script at its top-level semicolons.
///
/// Semicolons inside single-quoted strings (including `E'…'` strings with
/// backslash escapes), double-quoted identifiers, dollar-quoted strings
/// (`$$…$$`, `$tag$…$tag$`), `--` line comments and (nested) `/* */` block
/// comments do not split. The statements are returned trimmed, without their
/// semicolon, and pieces holding nothing but whitespace and comments are left
/// out. Comments before a statement stay part of it. Unterminated quotes or
/// comments run to the end of the script (the server reports the error).
///
/// ```
/// use parapet_migrate::split_statements;
///
/// let sql = "-- no-transaction
/// CREATE FUNCTION f() RETURNS text AS $body$ SELECT 'a;b' $body$ LANGUAGE sql;
/// /* a ; comment */ SELECT \"odd;name\" FROM t; -- trailing ; comment
/// ";
/// let statements = split_statements(sql);
/// assert_eq!(statements.len(), 2);
/// assert!(statements[0].ends_with("LANGUAGE sql"));
/// assert_eq!(statements[1], "/* a ; comment */ SELECT \"odd;name\" FROM t");
/// ```
pub fn split_statements(sql: &str) -> Vec<&str> {
    let bytes = sql.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut has_code = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = skip_line_comment(bytes, i);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(bytes, i);
                continue;
            }
            b';' => {
                if has_code {
                    statements.push(sql[start..i].trim());
                }
                start = i + 1;
                has_code = false;
                i += 1;
                continue;
            }
            _ => {}
        }
        if !b.is_ascii_whitespace() {
            has_code = true;
        }
        i = match b {
            b'\'' => {
                let escapes = i > 0
                    && bytes[i - 1].eq_ignore_ascii_case(&b'e')
                    && (i < 2 || !is_ident_byte(bytes[i - 2]));
                skip_single_quoted(bytes, i, escapes)
            }
            b'"' => skip_double_quoted(bytes, i),
            b'$' if i == 0 || !is_ident_byte(bytes[i - 1]) => match dollar_tag(bytes, i) {
                Some(tag_len) => skip_dollar_quoted(bytes, i, tag_len),
                None => i + 1,
            },
            _ => i + 1,
        };
    }
    if has_code {
        statements.push(sql[start..].trim());
    }
    statements
}

/// Returns `sql` without the whitespace and comments it starts with.
pub(crate) fn strip_leading_comments(sql: &str) -> &str {
    let bytes = sql.as_bytes();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes[i..].starts_with(b"--") {
            i = skip_line_comment(bytes, i);
        } else if bytes[i..].starts_with(b"/*") {
            i = skip_block_comment(bytes, i);
        } else {
            return &sql[i..];
        }
    }
}

/// Whether `b` can continue an unquoted identifier (or be part of a
/// multi-byte UTF-8 character, which PostgreSQL allows in identifiers).
pub(crate) fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// `i` is at `--`; returns the index just past the end of the line.
pub(crate) fn skip_line_comment(bytes: &[u8], i: usize) -> usize {
    match bytes[i..].iter().position(|&b| b == b'\n') {
        Some(offset) => i + offset + 1,
        None => bytes.len(),
    }
}

/// `i` is at `/*`; returns the index just past the matching `*/`
/// (block comments nest in PostgreSQL).
pub(crate) fn skip_block_comment(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// `i` is at `'`; returns the index just past the closing quote. A doubled
/// quote (`''`) reads as closing and reopening, which splits the same way.
fn skip_single_quoted(bytes: &[u8], i: usize, backslash_escapes: bool) -> usize {
    let mut j = i + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' if backslash_escapes => j += 2,
            b'\'' => return j + 1,
            _ => j += 1,
        }
    }
    bytes.len()
}

/// `i` is at `"`; returns the index just past the closing quote.
pub(crate) fn skip_double_quoted(bytes: &[u8], i: usize) -> usize {
    match bytes[i + 1..].iter().position(|&b| b == b'"') {
        Some(offset) => i + 1 + offset + 1,
        None => bytes.len(),
    }
}

/// If a dollar-quote opening tag (`$$` or `$tag$`) starts at `i`, its length.
fn dollar_tag(bytes: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    if bytes.get(j).is_some_and(u8::is_ascii_digit) {
        return None; // `$1`: a parameter, not a quote.
    }
    while j < bytes.len() && is_ident_byte(bytes[j]) && bytes[j] != b'$' {
        j += 1;
    }
    (bytes.get(j) == Some(&b'$')).then_some(j + 1 - i)
}

/// `i` is at a dollar-quote opening tag of `tag_len` bytes; returns the index
/// just past the closing tag.
fn skip_dollar_quoted(bytes: &[u8], i: usize, tag_len: usize) -> usize {
    let tag = &bytes[i..i + tag_len];
    let body = i + tag_len;
    match bytes[body..]
        .windows(tag_len)
        .position(|window| window == tag)
    {
        Some(offset) => body + offset + tag_len,
        None => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_simple_statements() {
        assert_eq!(
            split_statements("SELECT 1; SELECT 2;\nSELECT 3"),
            ["SELECT 1", "SELECT 2", "SELECT 3"]
        );
    }

    #[test]
    fn empty_and_comment_only_pieces_are_dropped() {
        assert!(split_statements("").is_empty());
        assert!(split_statements(" ;;\n ; -- just a comment;\n /* x; */ ").is_empty());
        assert_eq!(split_statements(";;SELECT 1;;"), ["SELECT 1"]);
        assert_eq!(
            split_statements("SELECT 1; -- done; really\n"),
            ["SELECT 1"]
        );
    }

    #[test]
    fn single_quotes_protect_semicolons() {
        assert_eq!(
            split_statements("INSERT INTO t VALUES ('a;b', 'it''s; fine'); SELECT 2"),
            ["INSERT INTO t VALUES ('a;b', 'it''s; fine')", "SELECT 2"]
        );
    }

    #[test]
    fn escape_strings_honour_backslashes() {
        assert_eq!(
            split_statements(r"SELECT E'a\';b'; SELECT 2"),
            [r"SELECT E'a\';b'", "SELECT 2"]
        );
        // In a standard string a backslash is an ordinary character.
        assert_eq!(
            split_statements(r"SELECT 'a\'; SELECT 2"),
            [r"SELECT 'a\'", "SELECT 2"]
        );
        // `e` at the end of an identifier does not make an escape string.
        assert_eq!(
            split_statements(r"SELECT name'a\'; SELECT 2"),
            [r"SELECT name'a\'", "SELECT 2"]
        );
    }

    #[test]
    fn double_quoted_identifiers_protect_semicolons() {
        assert_eq!(
            split_statements(r#"CREATE TABLE "a;b" ("c""d;" int); SELECT 1"#),
            [r#"CREATE TABLE "a;b" ("c""d;" int)"#, "SELECT 1"]
        );
    }

    #[test]
    fn dollar_quotes_protect_semicolons() {
        let sql = "DO $$ BEGIN PERFORM 1; END $$; \
                   CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $x$ ; $fn$ LANGUAGE sql; \
                   SELECT 3";
        assert_eq!(
            split_statements(sql),
            [
                "DO $$ BEGIN PERFORM 1; END $$",
                "CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $x$ ; $fn$ LANGUAGE sql",
                "SELECT 3",
            ]
        );
    }

    #[test]
    fn dollar_signs_that_are_not_quotes() {
        // Positional parameters and `$` inside identifiers.
        assert_eq!(
            split_statements("PREPARE p AS SELECT $1; SELECT a$b$ FROM t; SELECT 3"),
            ["PREPARE p AS SELECT $1", "SELECT a$b$ FROM t", "SELECT 3"]
        );
    }

    #[test]
    fn comments_protect_quotes_and_semicolons() {
        let sql = "-- it's; a comment\nSELECT 1 /* don't; /* nested; */ still; */ + 1;\nSELECT 2";
        assert_eq!(
            split_statements(sql),
            [
                "-- it's; a comment\nSELECT 1 /* don't; /* nested; */ still; */ + 1",
                "SELECT 2"
            ]
        );
        // A quote hides comment markers.
        assert_eq!(
            split_statements("SELECT '--', '/*'; SELECT 2"),
            ["SELECT '--', '/*'", "SELECT 2"]
        );
    }

    #[test]
    fn unterminated_constructs_run_to_the_end() {
        assert_eq!(split_statements("SELECT 'a; b"), ["SELECT 'a; b"]);
        assert_eq!(split_statements("SELECT $$ a; b"), ["SELECT $$ a; b"]);
        assert_eq!(split_statements("SELECT 1 /* a; b"), ["SELECT 1 /* a; b"]);
        assert_eq!(split_statements("SELECT \"a; b"), ["SELECT \"a; b"]);
    }

    #[test]
    fn non_ascii_text_is_kept_intact() {
        assert_eq!(
            split_statements("SELECT 'é;ü'; SELECT \"naïve\"; SELECT 3 -- ünïcode"),
            ["SELECT 'é;ü'", "SELECT \"naïve\"", "SELECT 3 -- ünïcode"]
        );
    }

    #[test]
    fn strips_leading_comments() {
        assert_eq!(
            strip_leading_comments("-- a\n /* b /* c */ */\n  CREATE INDEX"),
            "CREATE INDEX"
        );
        assert_eq!(strip_leading_comments("-- only"), "");
        assert_eq!(strip_leading_comments(""), "");
    }
}
