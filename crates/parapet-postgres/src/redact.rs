//! [`redact`]: a connection string fit for a log line or an error message.

/// `conninfo` (a `postgres://` URL or a libpq `key=value` string) with every password replaced
/// by `***`: the URL's user-info password, a `password` (or `pass`, `sslpassword`) query
/// parameter, a `password=` pair, quoted or not, with or without spaces around `=`.
///
/// Made for text that may be malformed (it is what error messages quote): a password that holds
/// an unencoded `@`, `/` or `?`, an unterminated quote, a key without `=` are still hidden, at
/// the price of hiding more than the password when the string is odd. The user name, hosts,
/// database and other parameters stay readable.
///
/// ```
/// use parapet_postgres::redact;
///
/// assert_eq!(
///     redact("postgres://app:hunter2@db:5432/crm?sslmode=verify-full"),
///     "postgres://app:***@db:5432/crm?sslmode=verify-full"
/// );
/// assert_eq!(
///     redact("host=db user=app password='it\\'s secret' dbname=crm"),
///     "host=db user=app password=*** dbname=crm"
/// );
/// ```
pub fn redact(conninfo: &str) -> String {
    match conninfo.find("://") {
        Some(scheme) => redact_url(conninfo, scheme + 3),
        None => redact_key_values(conninfo),
    }
}

/// Whether a parameter named `key` holds a secret.
fn is_secret(key: &str) -> bool {
    // A percent-encoded name is decoded by the driver: compare what it would see.
    let bytes = key.trim().as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    decoded.make_ascii_lowercase();
    matches!(&decoded[..], b"password" | b"pass" | b"sslpassword")
}

fn redact_url(url: &str, start: usize) -> String {
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..start]);
    let rest = &url[start..];
    // The last `@` ends the user info: a password may hold an unencoded `@` (or `/`, `?`), and
    // hiding a host now and then is better than showing a password.
    let after = match rest.rfind('@') {
        Some(at) => {
            match rest[..at].split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(&rest[..at]),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    // Query parameters, wherever a `?` or `&` starts one.
    let mut segment_start = 0;
    for (i, c) in after.char_indices().chain([(after.len(), '&')]) {
        if c == '?' || c == '&' {
            let segment = &after[segment_start..i];
            match segment.split_once('=') {
                Some((key, _)) if is_secret(key) => {
                    out.push_str(key);
                    out.push_str("=***");
                }
                _ => out.push_str(segment),
            }
            if i < after.len() {
                out.push(c);
            }
            segment_start = i + c.len_utf8();
        }
    }
    out
}

fn redact_key_values(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let spaces = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..spaces]);
        rest = &rest[spaces..];
        if rest.is_empty() {
            return out;
        }
        let key_len = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_len];
        out.push_str(key);
        rest = &rest[key_len..];
        let spaces = rest.len() - rest.trim_start().len();
        let has_equals = rest[spaces..].starts_with('=');
        if !has_equals && !is_secret(key) {
            // Not a pair (malformed): copy and go on with the next word.
            continue;
        }
        if has_equals {
            out.push_str(&rest[..spaces]);
            out.push('=');
            rest = &rest[spaces + 1..];
            let spaces = rest.len() - rest.trim_start().len();
            out.push_str(&rest[..spaces]);
            rest = &rest[spaces..];
        } else {
            // `password secret`: hide the next word, as a value.
            out.push_str(&rest[..spaces]);
            rest = &rest[spaces..];
            if rest.is_empty() {
                return out;
            }
        }
        let value_len = value_len(rest);
        if is_secret(key) {
            out.push_str("***");
        } else {
            out.push_str(&rest[..value_len]);
        }
        rest = &rest[value_len..];
    }
}

/// The length of the value at the start of `s`: a single-quoted one (`\` escapes, `''` is a
/// quote inside it) through its closing quote, or else up to the next whitespace; an
/// unterminated quote runs to the end.
fn value_len(s: &str) -> usize {
    let mut chars = s.char_indices().peekable();
    if s.starts_with('\'') {
        chars.next();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' if chars.next_if(|(_, c)| *c == '\'').is_none() => return i + 1,
                _ => {}
            }
        }
        return s.len();
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            c if c.is_whitespace() => return i,
            _ => {}
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn urls() {
        for (url, expected) in [
            ("postgres://app:pw@h/db", "postgres://app:***@h/db"),
            ("postgres://app@h/db", "postgres://app@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            ("postgres://:pw@h/db", "postgres://:***@h/db"),
            (
                "postgres://app:p@ss/w?rd@h:5432/db",
                "postgres://app:***@h:5432/db",
            ),
            (
                "postgres://app@h/db?sslmode=require&password=pw&application_name=x",
                "postgres://app@h/db?sslmode=require&password=***&application_name=x",
            ),
            (
                "postgres://h/db?PASSWORD=pw",
                "postgres://h/db?PASSWORD=***",
            ),
            (
                "postgres://h/db?pass%77ord=pw",
                "postgres://h/db?pass%77ord=***",
            ),
            (
                "postgres://app:pw@h/db?application_name=a@b&password=pw2",
                "postgres://app:***@b&password=***",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&pass=pw",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
        ] {
            assert_eq!(redact(url), expected, "{url}");
        }
    }

    #[test]
    fn key_value_strings() {
        for (conninfo, expected) in [
            (
                "host=db user=app password=pw dbname=crm",
                "host=db user=app password=*** dbname=crm",
            ),
            ("password = pw host=db", "password = *** host=db"),
            ("password='p w' host=db", "password=*** host=db"),
            ("password='it\\'s' host=db", "password=*** host=db"),
            ("password='it''s pw' host=db", "password=*** host=db"),
            ("PASSWORD=pw", "PASSWORD=***"),
            ("host=db password='unterminated pw", "host=db password=***"),
            ("host=db password", "host=db password"),
            ("host=db password pw", "host=db password ***"),
            (
                "sslpassword=pw sslmode='verify full'",
                "sslpassword=*** sslmode='verify full'",
            ),
            ("host=db dbname=a\\ b", "host=db dbname=a\\ b"),
        ] {
            let redacted = redact(conninfo);
            assert_eq!(redacted, expected, "{conninfo}");
            assert!(!redacted.contains("pw"), "{conninfo}: {redacted}");
        }
    }
}
