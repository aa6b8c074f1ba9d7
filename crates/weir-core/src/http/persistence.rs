//! Cookie session persistence: which server a request is pinned to, and the cookie that pins it.
//!
//! A server is named in cookies by an opaque id: 16 hex digits of a 64-bit hash (FNV-1a, then
//! the splitmix64 finalizer) of the group name and the server name. Ids are the same on every
//! weir process and node with the same config, survive reloads and address changes, and never
//! reveal a server address. A cookie only pins when its value is the id of a server of *this*
//! group, so a client cannot steer traffic anywhere else; whether that server may take the
//! request (up, not draining) is the caller's check.
//!
//! `cookie_insert`: weir owns the cookie — `NAME=<id>` is set on every response and removed
//! from requests before they reach the server. `cookie_rewrite`: the server owns the cookie —
//! its value goes out as `<id>~value` and comes back in as `value`.

use std::collections::HashMap;
use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{COOKIE, Entry, SET_COOKIE};
use http::{HeaderMap, HeaderValue};
use weir_config::{Persistence, Server};

/// Separates the server id from the server's own value in `cookie_rewrite`.
const SEP: u8 = b'~';

/// What happens to one `Cookie` header value on its way to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieEdit {
    /// Forward it as it is.
    Keep,
    /// Leave it out: only weir's cookie was in it.
    Drop,
    /// Forward this instead.
    Replace(Vec<u8>),
}

/// Cookie persistence of one group. `Send + Sync`; build it once per config.
#[derive(Debug, Clone)]
pub struct Persist {
    cookie: String,
    rewrite: bool,
    ids: Vec<String>,
    by_id: HashMap<String, usize>,
    /// `cookie_insert`: the `Set-Cookie` value of each server, built once.
    set_cookie: Vec<Option<HeaderValue>>,
}

impl Persist {
    /// Persistence for the group named `group`, whose servers are `servers` in order (indices
    /// are server indices). Ids that collide within the group get `-2`, `-3`… appended.
    pub fn new(persistence: &Persistence, group: &str, servers: &[Server]) -> Persist {
        let ids = unique(servers.iter().map(|s| server_id(group, &s.name)).collect());
        let by_id = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i))
            .collect();
        let (cookie, rewrite, max_age) = match persistence {
            Persistence::CookieInsert { cookie, timeout } => {
                // Round up: a sub-second lifetime must not become `Max-Age=0` (delete).
                let max_age = timeout.map(|t| t.as_secs() + u64::from(t.subsec_nanos() > 0));
                (cookie.clone(), false, max_age)
            }
            Persistence::CookieRewrite { cookie } => (cookie.clone(), true, None),
        };
        let set_cookie = if rewrite {
            Vec::new()
        } else {
            ids.iter()
                .map(|id| {
                    let mut value = format!("{cookie}={id}; Path=/; HttpOnly");
                    if let Some(secs) = max_age {
                        // Writing to a String cannot fail.
                        let _ = write!(value, "; Max-Age={secs}");
                    }
                    // Cookie names were validated; a bad one set in code only disables the cookie.
                    HeaderValue::from_maybe_shared(Bytes::from(value)).ok()
                })
                .collect()
        };
        Persist {
            cookie,
            rewrite,
            ids,
            by_id,
            set_cookie,
        }
    }

    /// The server the request's cookie names, if it names a server of this group. Looks at
    /// every `Cookie` header and every pair in them (the first pair naming a server wins);
    /// malformed pairs and other groups' or unknown ids are ignored.
    pub fn pinned(&self, headers: &HeaderMap) -> Option<usize> {
        self.pinned_in(headers.get_all(COOKIE).iter().map(HeaderValue::as_bytes))
    }

    /// [`Persist::pinned`] over the raw values of the `Cookie` headers.
    pub fn pinned_in<'a>(&self, cookies: impl Iterator<Item = &'a [u8]>) -> Option<usize> {
        let mut cookies = cookies;
        cookies.find_map(|value| {
            pairs(value).find_map(|(name, value)| {
                if name != self.cookie.as_bytes() {
                    return None;
                }
                let value = unquote(value);
                let id = if self.rewrite {
                    &value[..value.iter().position(|&b| b == SEP)?]
                } else {
                    value
                };
                self.by_id.get(std::str::from_utf8(id).ok()?).copied()
            })
        })
    }

    /// Prepares the request's `Cookie` headers for the server. `cookie_insert`: removes weir's
    /// cookie, keeping every other pair. `cookie_rewrite`: strips the `<id>~` prefix from the
    /// cookie's value so the server sees its own value (a prefix of a server no longer in the
    /// group is stripped too, if it has the shape of an id). Touches nothing when the cookie is
    /// absent.
    pub fn strip_request(&self, headers: &mut HeaderMap) {
        let edits: Vec<CookieEdit> = headers
            .get_all(COOKIE)
            .iter()
            .map(|v| self.strip_value(v.as_bytes()))
            .collect();
        if edits.iter().all(|e| matches!(e, CookieEdit::Keep)) {
            return;
        }
        let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
        headers.remove(COOKIE);
        for (value, edit) in values.into_iter().zip(edits) {
            let value = match edit {
                CookieEdit::Keep => value,
                CookieEdit::Drop => continue,
                CookieEdit::Replace(bytes) => {
                    match HeaderValue::from_maybe_shared(Bytes::from(bytes)) {
                        Ok(value) => value,
                        Err(_) => continue,
                    }
                }
            };
            headers.append(COOKIE, value);
        }
    }

    /// What [`Persist::strip_request`] does to one `Cookie` header value.
    pub fn strip_value(&self, value: &[u8]) -> CookieEdit {
        let name = self.cookie.as_bytes();
        if !pairs(value).any(|(n, _)| n == name) {
            return CookieEdit::Keep;
        }
        let mut out: Vec<u8> = Vec::with_capacity(value.len());
        for pair in split_pairs(value) {
            let (pair_name, pair_value) = split_pair(pair);
            let piece: Vec<u8>;
            let keep: &[u8] = match pair_value {
                Some(_) if pair_name != name => pair,
                None => pair,
                Some(_) if !self.rewrite => continue,
                Some(v) => {
                    piece = [name, b"=", &self.unprefix(v)[..]].concat();
                    &piece
                }
            };
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(keep);
        }
        if out.is_empty() {
            CookieEdit::Drop
        } else {
            CookieEdit::Replace(out)
        }
    }

    /// Response side, for the server (by index) that served it. `cookie_insert` appends
    /// `Set-Cookie: NAME=<id>; Path=/; HttpOnly[; Max-Age=N]` (call it for every response, 3xx,
    /// 4xx and 5xx included); `cookie_rewrite` prefixes the value of the server's own
    /// `Set-Cookie` for NAME with `<id>~`, leaving its attributes alone. An unknown index does
    /// nothing.
    pub fn on_response(&self, headers: &mut HeaderMap, server: usize) {
        if let Some(value) = self.inserted(server) {
            headers.append(SET_COOKIE, value.clone());
            return;
        }
        let Entry::Occupied(mut entry) = headers.entry(SET_COOKIE) else {
            return;
        };
        for value in entry.iter_mut() {
            if let Some(out) = self.rewrite_set_cookie(value.as_bytes(), server)
                && let Ok(new) = HeaderValue::from_maybe_shared(Bytes::from(out))
            {
                *value = new;
            }
        }
    }

    /// `cookie_insert`: the `Set-Cookie` value every response from `server` gets.
    pub fn inserted(&self, server: usize) -> Option<&HeaderValue> {
        self.set_cookie.get(server)?.as_ref()
    }

    /// `cookie_rewrite`: the server's own `Set-Cookie` value with `<id>~` put in front of the
    /// cookie's value; `None` when the value is not weir's cookie (or in `cookie_insert` mode).
    pub fn rewrite_set_cookie(&self, bytes: &[u8], server: usize) -> Option<Vec<u8>> {
        if !self.rewrite {
            return None;
        }
        let id = self.ids.get(server)?;
        let name = self.cookie.as_bytes();
        let end = bytes.iter().position(|&b| b == b';').unwrap_or(bytes.len());
        let (pair, attributes) = bytes.split_at(end);
        let (pair_name, Some(pair_value)) = split_pair(pair) else {
            return None;
        };
        if pair_name != name {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() + id.len() + 1);
        out.extend_from_slice(name);
        out.push(b'=');
        let quoted = is_quoted(pair_value);
        if quoted {
            out.push(b'"');
        }
        out.extend_from_slice(id.as_bytes());
        out.push(SEP);
        out.extend_from_slice(unquote(pair_value));
        if quoted {
            out.push(b'"');
        }
        out.extend_from_slice(attributes);
        Some(out)
    }

    /// The opaque id of a server (for tests and logs); empty for an unknown index.
    pub fn id(&self, server: usize) -> &str {
        self.ids.get(server).map_or("", String::as_str)
    }

    /// `cookie_rewrite`: the value without its `<id>~` prefix (quotes kept around the rest).
    fn unprefix(&self, value: &[u8]) -> Vec<u8> {
        let quoted = is_quoted(value);
        let inner = unquote(value);
        let Some(sep) = inner.iter().position(|&b| b == SEP) else {
            return value.to_vec();
        };
        let prefix = &inner[..sep];
        let ours =
            std::str::from_utf8(prefix).is_ok_and(|p| self.by_id.contains_key(p) || id_shaped(p));
        if !ours {
            return value.to_vec();
        }
        let rest = &inner[sep + 1..];
        if quoted {
            [&b"\""[..], rest, b"\""].concat()
        } else {
            rest.to_vec()
        }
    }
}

/// The id of server `server` of group `group`: 16 hex digits of a 64-bit hash.
fn server_id(group: &str, server: &str) -> String {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    // 0xff never occurs in UTF-8, so ("ab", "c") and ("a", "bc") hash differently.
    let bytes = group.bytes().chain([0xff]).chain(server.bytes());
    let mut h = bytes.fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    // splitmix64 finalizer: spreads FNV's weak high bits.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    format!("{h:016x}")
}

/// Makes ids unique: a repeated id gets `-2`, `-3`… (the first unused) appended.
fn unique(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut candidate = id.clone();
        let mut n = 2u32;
        while !seen.insert(candidate.clone()) {
            candidate = format!("{id}-{n}");
            n += 1;
        }
        out.push(candidate);
    }
    out
}

/// Whether `s` looks like a server id (`[0-9a-f]{16}` with an optional `-N`).
fn id_shaped(s: &str) -> bool {
    let (hash, counter) = s.split_once('-').unwrap_or((s, "1"));
    hash.len() == 16
        && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && !counter.is_empty()
        && counter.bytes().all(|b| b.is_ascii_digit())
}

/// The `;`-separated pairs of a Cookie header, trimmed, empty ones skipped.
fn split_pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
}

/// `name=value` → (name, Some(value)), both trimmed; no `=` → (pair, None).
fn split_pair(pair: &[u8]) -> (&[u8], Option<&[u8]>) {
    match pair.iter().position(|&b| b == b'=') {
        Some(i) => (pair[..i].trim_ascii(), Some(pair[i + 1..].trim_ascii())),
        None => (pair.trim_ascii(), None),
    }
}

/// The well-formed `(name, value)` pairs of a Cookie header.
fn pairs(value: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    split_pairs(value).filter_map(|pair| match split_pair(pair) {
        (name, Some(value)) if !name.is_empty() => Some((name, value)),
        _ => None,
    })
}

/// Whether a cookie value is a quoted string (`"…"`).
fn is_quoted(value: &[u8]) -> bool {
    matches!(value, [b'"', .., b'"'] if value.len() >= 2)
}

/// A cookie value without its surrounding double quotes, if it has both.
fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

#[cfg(test)]
#[path = "persistence_tests.rs"]
mod tests;
