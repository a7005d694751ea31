//! Reading the server's replies: entries, field lists.

use redis::Value;

use super::Raw;

/// An entry from its id and field list; `None` when the reply is not
/// shaped as an entry at all.
pub(super) fn raw(id: &Value, fields: &Value, deliveries: u64) -> Option<Raw> {
    let Value::BulkString(id) = id else {
        return None;
    };
    let id = String::from_utf8_lossy(id).into_owned();
    let payload = match fields {
        Value::Array(f) => match f.as_slice() {
            [Value::BulkString(k), Value::BulkString(v)] if k == b"v" => Ok(v.clone()),
            other => Err(format!(
                "its fields are {} instead of the one field `v`",
                describe_fields(other)
            )),
        },
        Value::Nil => Err("it has no fields".to_string()),
        _ => return None,
    };
    Some(Raw {
        id,
        payload,
        deliveries,
    })
}

fn describe_fields(f: &[Value]) -> String {
    let names: Vec<String> = f
        .iter()
        .step_by(2)
        .map(|k| match k {
            Value::BulkString(b) => format!("`{}`", String::from_utf8_lossy(b)),
            other => format!("{other:?}"),
        })
        .collect();
    format!("[{}]", names.join(", "))
}

/// A server reply the queue does not understand, as the `redis` crate's
/// error.
pub(super) fn bad_reply(what: &'static str, got: String) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        what,
        format!("unexpected reply {got}"),
    ))
}
