//! Turning a finished container's log into the job's output.

use baseshift_core::JobError;
use serde_json::{Value, json};

/// The last `max_bytes` bytes of `logs`, cut at a character boundary.
pub(crate) fn tail(logs: &str, max_bytes: usize) -> &str {
    if logs.len() <= max_bytes {
        return logs;
    }
    let mut start = logs.len() - max_bytes;
    while !logs.is_char_boundary(start) {
        start += 1;
    }
    &logs[start..]
}

/// The JSON of the last log line starting with `marker`, if any.
///
/// A marked line that is not JSON is a permanent failure: the container's output is
/// deterministic, so another attempt would print the same line.
pub(crate) fn result_line(logs: &str, marker: &str) -> Result<Option<Value>, JobError> {
    let Some(line) = logs.lines().rev().find_map(|l| l.trim_end_matches('\r').strip_prefix(marker)) else {
        return Ok(None);
    };
    serde_json::from_str(line.trim()).map(Some).map_err(|e| {
        JobError::permanent(format!("the result line (`{}...`) is not JSON: {e}", marker.trim_end()))
            .with_details(json!({ "line": tail(line, 512) }))
    })
}

/// The job output: `{"result": <JSON of the result line or null>, "logs_tail": "...", "pod": "..."}`.
pub(crate) fn job_output(logs: &str, marker: &str, max_bytes: usize, pod: &str) -> Result<Value, JobError> {
    let result = result_line(logs, marker)?;
    Ok(json!({ "result": result, "logs_tail": tail(logs, max_bytes), "pod": pod }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "BASESHIFT_RESULT ";

    #[test]
    fn result_line_is_the_last_marked_line() {
        let logs =
            "starting\nBASESHIFT_RESULT {\"n\":1}\nworking\nBASESHIFT_RESULT {\"status\":\"paid\",\"id\":7}\r\nbye\n";
        let out = job_output(logs, M, 1024, "p").unwrap();
        assert_eq!(out["result"], json!({ "status": "paid", "id": 7 }));
        assert_eq!(out["logs_tail"], logs);
        assert_eq!(out["pod"], "p");
        assert_eq!(job_output("just logs\n", M, 1024, "p").unwrap()["result"], Value::Null);
    }

    #[test]
    fn bad_result_json_is_permanent() {
        let e = job_output("BASESHIFT_RESULT {oops\n", M, 1024, "p").unwrap_err();
        assert!(!e.is_retryable());
        assert!(e.message().contains("not JSON"), "{e}");
    }

    #[test]
    fn tail_respects_char_boundaries() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
        assert_eq!(tail("aéé", 3), "é");
    }
}
