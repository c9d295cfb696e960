//! Quoting for the statements that cannot take bound parameters (role names and
//! passwords in `ALTER ROLE`, `CREATE ROLE`, `GRANT`).

/// PostgreSQL identifiers are at most 63 bytes (NAMEDATALEN - 1).
pub const IDENTIFIER_LIMIT: usize = 63;

/// `"name"`, with embedded double quotes doubled: safe for any name, including
/// ones with quotes, spaces and semicolons.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with embedded single quotes doubled. With standard_conforming_strings
/// on (the default since PostgreSQL 9.1) backslashes are literal; the `E` form is
/// never used, and a value holding a backslash is still written as a plain literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_quotes_doubled() {
        assert_eq!(quote_ident("app"), "\"app\"");
        assert_eq!(
            quote_ident("we\"ird; DROP TABLE x; --"),
            "\"we\"\"ird; DROP TABLE x; --\""
        );
    }

    #[test]
    fn literals_double_single_quotes() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "'a\\b'");
    }
}
