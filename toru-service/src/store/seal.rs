//! Every stored value carries its own checksum, verified at each read.
//!
//! redb checks the checksums of its pages only when it verifies the whole
//! file (at start, see `open.rs`); a page damaged after that, or by a
//! writer that bypassed redb, would be read as good data. So each value is
//! stored sealed:
//!
//! ```text
//! +---------+------------------+-----------------+
//! | version | CRC-32 (LE, u32) | the value bytes |
//! |  1 byte |     4 bytes      |       ...       |
//! +---------+------------------+-----------------+
//! ```
//!
//! The CRC covers the table's name and the key as well as the value, so a
//! value that damage moved to another key, or another table, fails too.

/// The one layout this code writes and reads.
const VERSION: u8 = 1;
const HEADER: usize = 5;

/// The bytes to store for `value` under `key` (its parts) in `table`.
pub(super) fn seal(table: &str, key: &[&[u8]], value: &[u8]) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(HEADER + value.len());
    sealed.push(VERSION);
    sealed.extend_from_slice(&checksum(table, key, value).to_le_bytes());
    sealed.extend_from_slice(value);
    sealed
}

/// The value inside `stored`, or what is wrong with it.
pub(super) fn unseal<'a>(table: &str, key: &[&[u8]], stored: &'a [u8]) -> Result<&'a [u8], String> {
    let Some((&version, rest)) = stored.split_first() else {
        return Err("the stored value is empty".to_owned());
    };
    if version != VERSION {
        return Err(format!(
            "the stored value has an unknown layout ({version})"
        ));
    }
    let Some((crc, value)) = rest.split_first_chunk::<4>() else {
        return Err("the stored value is cut short".to_owned());
    };
    let expected = u32::from_le_bytes(*crc);
    let found = checksum(table, key, value);
    if found == expected {
        Ok(value)
    } else {
        Err(format!(
            "its checksum does not match ({found:08x}, stored {expected:08x})"
        ))
    }
}

fn checksum(table: &str, key: &[&[u8]], value: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    let mut part = |bytes: &[u8]| {
        // Length-prefixed, so that no two different keys hash alike.
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    part(table.as_bytes());
    for piece in key {
        part(piece);
    }
    part(value);
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_to_itself() {
        for value in [&b""[..], b"x", &[0u8; 10_000]] {
            let sealed = seal("kv", &[b"p", b"k"], value);
            assert_eq!(sealed.len(), value.len() + HEADER);
            assert_eq!(unseal("kv", &[b"p", b"k"], &sealed), Ok(value));
        }
    }

    #[test]
    fn any_flipped_bit_is_found() {
        let sealed = seal("kv", &[b"plugin", b"key"], b"the value");
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut damaged = sealed.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    unseal("kv", &[b"plugin", b"key"], &damaged).is_err(),
                    "byte {byte} bit {bit}"
                );
            }
        }
        assert!(unseal("kv", &[b"plugin", b"key"], &sealed[..3]).is_err());
        assert!(unseal("kv", &[b"plugin", b"key"], &[]).is_err());
    }

    #[test]
    fn a_value_under_another_key_or_table_is_found() {
        let sealed = seal("kv", &[b"a", b"bc"], b"v");
        assert!(unseal("kv", &[b"ab", b"c"], &sealed).is_err());
        assert!(unseal("kv", &[b"a", b"bd"], &sealed).is_err());
        assert!(unseal("plugins", &[b"a", b"bc"], &sealed).is_err());
    }
}
