//! CPython's `multiprocessing.connection` challenge-response, both forms.
//!
//! The side that delivers a challenge sends `#CHALLENGE#` + a message and
//! expects an HMAC of that message under the shared key; it answers
//! `#WELCOME#` or `#FAILURE#`. Each side of a connection does both, in
//! opposite orders (the listener challenges first).
//!
//! | CPython | challenge message | response |
//! |---|---|---|
//! | ≤ 3.11 | 20 random bytes | raw HMAC-MD5 (16 bytes) |
//! | ≥ 3.12 | `{sha256}` + 40 random bytes | `{sha256}` + HMAC-SHA256 of the whole message |
//!
//! A 3.12 peer answers a 20-byte challenge the old way, and an old peer
//! answers a prefixed challenge with raw HMAC-MD5 of the whole message;
//! mpkit does the same in both directions, so it talks to both. Every read
//! before authentication is at most 256 bytes (as in CPython) and bounded by
//! a deadline; nothing is decoded, only compared, in constant time.

use hmac::{KeyInit, Mac};

use crate::connection::{RawConnection, RecvError};
use crate::sys::Deadline;

use super::NetError;

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in the challenges we send (CPython ≥ 3.12 sends 40).
const MESSAGE_LENGTH: usize = 40;
/// The challenge length of CPython ≤ 3.11.
const LEGACY_MESSAGE_LENGTH: usize = 20;
/// The length of a raw HMAC-MD5 response.
const MD5_LEN: usize = 16;
/// The largest message read before authentication.
const MAX_PREAUTH: usize = 256;

/// The digests this side computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
}

impl Digest {
    fn from_name(name: &[u8]) -> Option<Digest> {
        match name {
            b"md5" => Some(Digest::Md5),
            b"sha256" => Some(Digest::Sha256),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        match self {
            Digest::Md5 => {
                let mut m = hmac::Hmac::<md5::Md5>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                m.update(message);
                m.finalize().into_bytes().to_vec()
            }
            Digest::Sha256 => {
                let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                m.update(message);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn verify(self, key: &[u8], message: &[u8], mac: &[u8]) -> bool {
        match self {
            Digest::Md5 => {
                let mut m = hmac::Hmac::<md5::Md5>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                m.update(message);
                m.verify_slice(mac).is_ok()
            }
            Digest::Sha256 => {
                let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
                    .expect("HMAC takes keys of any length");
                m.update(message);
                m.verify_slice(mac).is_ok()
            }
        }
    }
}

/// Splits `{digest}payload`; `None` digest for the legacy unprefixed form.
fn split_digest(message: &[u8]) -> Result<(Option<Digest>, &[u8]), NetError> {
    if message.len() == LEGACY_MESSAGE_LENGTH || message.len() == MD5_LEN {
        return Ok((None, message));
    }
    if message.first() == Some(&b'{') {
        if let Some(end) = message.iter().take(22).position(|&b| b == b'}') {
            let name = &message[1..end];
            return match Digest::from_name(name) {
                Some(d) => Ok((Some(d), &message[end + 1..])),
                None => Err(NetError::Authentication(format!(
                    "the peer uses digest {:?}, which mpkit does not support (md5, sha256)",
                    String::from_utf8_lossy(name)
                ))),
            };
        }
    }
    Err(NetError::Authentication(format!(
        "unsupported handshake message of {} bytes (no digest prefix)",
        message.len()
    )))
}

/// What a receive error during the handshake means to the caller.
pub(crate) fn preauth_error(e: RecvError) -> NetError {
    match e {
        RecvError::Timeout => {
            NetError::Authentication("the peer did not complete the handshake in time".into())
        }
        RecvError::TooLarge { len, .. } => NetError::Authentication(format!(
            "the peer sent a {len}-byte message during the handshake"
        )),
        RecvError::Eof | RecvError::Truncated { .. } => {
            NetError::Authentication("the peer closed the connection during the handshake".into())
        }
        RecvError::Malformed(why) => {
            NetError::Authentication(format!("the peer does not speak the protocol: {why}"))
        }
        other => NetError::Authentication(other.to_string()),
    }
}

fn recv_preauth(conn: &mut RawConnection, deadline: Deadline) -> Result<Vec<u8>, NetError> {
    conn.recv_bytes(Some(MAX_PREAUTH), deadline)
        .map_err(preauth_error)
}

/// One handshake message if a whole one has arrived, without waiting:
/// `Ok(None)` while it has not.
pub(crate) fn try_recv_preauth(conn: &mut RawConnection) -> Result<Option<Vec<u8>>, NetError> {
    match conn.recv_bytes(Some(MAX_PREAUTH), Some(std::time::Instant::now())) {
        Ok(m) => Ok(Some(m)),
        Err(RecvError::Timeout) => Ok(None),
        Err(e) => Err(preauth_error(e)),
    }
}

pub(crate) fn send(conn: &mut RawConnection, bytes: &[u8]) -> Result<(), NetError> {
    conn.send_message(bytes, &[])
        .map_err(|e| NetError::Authentication(format!("handshake send failed: {e}")))
}

/// Sends a fresh challenge; returns the message the peer's answer must
/// authenticate.
pub(crate) fn send_challenge(conn: &mut RawConnection) -> Result<Vec<u8>, NetError> {
    let mut random = [0u8; MESSAGE_LENGTH];
    crate::sys::random_bytes(&mut random)?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&random);
    let mut challenge = CHALLENGE.to_vec();
    challenge.extend_from_slice(&message);
    send(conn, &challenge)?;
    Ok(message)
}

/// Checks the peer's answer to our challenge `message` and tells it the
/// verdict.
pub(crate) fn judge_response(
    conn: &mut RawConnection,
    key: &[u8],
    message: &[u8],
    response: &[u8],
) -> Result<(), NetError> {
    let ok = match split_digest(response) {
        // A peer that predates digest prefixes answers with raw HMAC-MD5 of
        // the whole message; a prefixed answer names its digest, and the MAC
        // covers the prefix of our message, so it cannot be downgraded.
        Ok((digest, mac)) => digest.unwrap_or(Digest::Md5).verify(key, message, mac),
        Err(_) => false,
    };
    if ok {
        send(conn, WELCOME)
    } else {
        let _ = send(conn, FAILURE);
        Err(NetError::Authentication(
            "the peer's digest was wrong (wrong or missing auth key)".into(),
        ))
    }
}

/// Answers the peer's challenge in the form it used.
pub(crate) fn answer(
    conn: &mut RawConnection,
    key: &[u8],
    challenge: &[u8],
) -> Result<(), NetError> {
    let Some(message) = challenge.strip_prefix(CHALLENGE) else {
        return Err(NetError::Authentication(
            "expected a challenge from the peer (does it use an auth key?)".into(),
        ));
    };
    if message.len() < LEGACY_MESSAGE_LENGTH {
        return Err(NetError::Authentication(format!(
            "challenge too short: {} bytes",
            message.len()
        )));
    }
    let response = match split_digest(message)?.0 {
        None => Digest::Md5.mac(key, message),
        Some(d) => {
            let mut r = format!("{{{}}}", d.name()).into_bytes();
            r.extend_from_slice(&d.mac(key, message));
            r
        }
    };
    send(conn, &response)
}

/// Reads the peer's verdict on our answer.
pub(crate) fn check_verdict(verdict: &[u8]) -> Result<(), NetError> {
    if verdict == WELCOME {
        Ok(())
    } else {
        Err(NetError::Authentication(
            "the peer rejected our digest (wrong auth key)".into(),
        ))
    }
}

/// Sends a challenge and checks the peer's answer (the listener's first step).
pub(crate) fn deliver_challenge(
    conn: &mut RawConnection,
    key: &[u8],
    deadline: Deadline,
) -> Result<(), NetError> {
    let message = send_challenge(conn)?;
    let response = recv_preauth(conn, deadline)?;
    judge_response(conn, key, &message, &response)
}

/// Answers the peer's challenge in the form it used (the client's first step).
pub(crate) fn answer_challenge(
    conn: &mut RawConnection,
    key: &[u8],
    deadline: Deadline,
) -> Result<(), NetError> {
    let challenge = recv_preauth(conn, deadline)?;
    answer(conn, key, &challenge)?;
    check_verdict(&recv_preauth(conn, deadline)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        // RFC 2202 test case 2 (HMAC-MD5) and RFC 4231 test case 2 (HMAC-SHA256).
        let md5 = Digest::Md5.mac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(md5, hex("750c783e6ab0b503eaa86e310a5db738"));
        let sha = Digest::Sha256.mac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sha,
            hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert!(Digest::Sha256.verify(b"Jefe", b"what do ya want for nothing?", &sha));
        assert!(!Digest::Sha256.verify(b"Jeff", b"what do ya want for nothing?", &sha));
    }

    #[test]
    fn digest_prefixes() {
        assert_eq!(split_digest(&[0; 20]).unwrap().0, None);
        assert_eq!(
            split_digest(b"{sha256}0123456789012345678901234567890123456789")
                .unwrap()
                .0,
            Some(Digest::Sha256)
        );
        assert!(split_digest(b"{sha3_512}0123456789012345678901234567890123456789").is_err());
        assert!(split_digest(b"no prefix and not a legacy length").is_err());
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
