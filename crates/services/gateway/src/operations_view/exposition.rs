//! The Prometheus text exposition, read as far as the operations view needs: each sample
//! line's metric name, labels and value. The services serve OpenMetrics text, a superset
//! of it on these lines.
//!
//! Written here rather than taken from a crate: prometheus-client, the one in Cargo.lock,
//! only writes the format, and a sample line is a name, a few quoted labels and a number,
//! which a page of code reads; `# HELP`, `# TYPE`, timestamps and exemplars are skipped.

use std::borrow::Cow;

/// One sample line: `name{label="value",...} value [timestamp] [# exemplar]`.
#[derive(Debug, PartialEq)]
pub(super) struct Sample<'a> {
    pub name: &'a str,
    labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| *label == name)
            .map(|(_, value)| value.as_ref())
    }
}

/// Every sample of `text`, in order; a line that is not one is an error naming it.
pub(super) fn samples(text: &str) -> impl Iterator<Item = Result<Sample<'_>, String>> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(i, line)| sample(line).ok_or_else(|| format!("line {}: {line:?}", i + 1)))
}

fn sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    if name.is_empty() {
        return None;
    }
    let mut labels = Vec::new();
    if let Some(inside) = rest.strip_prefix('{') {
        rest = inside;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = rest.split_once('=')?;
            let (value, after) = quoted(after.trim_start().strip_prefix('"')?)?;
            labels.push((label.trim(), value));
            rest = after;
        }
    }
    // The value is the first field; a timestamp or an exemplar may follow it.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// A label value up to its closing quote (`text` starts just after the opening one), with
/// its escapes (`\\`, `\"`, `\n`) undone; and what follows the closing quote.
fn quoted(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let mut escaped: Option<String> = None;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let value = escaped.map_or(Cow::Borrowed(&text[..i]), Cow::Owned);
                return Some((value, &text[i + 1..]));
            }
            '\\' => {
                let buffer = escaped.get_or_insert_with(|| text[..i].to_owned());
                match chars.next()?.1 {
                    'n' => buffer.push('\n'),
                    other => buffer.push(other),
                }
            }
            c => {
                if let Some(buffer) = escaped.as_mut() {
                    buffer.push(c);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<Sample<'_>> {
        samples(text).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn samples_are_read_with_their_labels_in_any_order_and_comments_skipped() {
        let text = "# HELP mall_http_requests HTTP requests answered.\n\
            # TYPE mall_http_requests counter\n\
            mall_http_requests_total{service=\"order\",method=\"GET\",route=\"/orders/{id}\",status=\"200\"} 7\n\
            mall_http_request_duration_seconds_bucket{service=\"order\",le=\"+Inf\",method=\"GET\",route=\"/x\"} 3\n\
            mall_outbox_backlog{service=\"order\"} 0\n\
            \n\
            mall_process_cpu_seconds_total 1.25 1700000000000\n\
            mall_saga_duration_seconds_count{until=\"confirmed\"} 2 # {trace_id=\"ab\"} 0.5\n\
            # EOF\n";
        let samples = all(text);
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0].name, "mall_http_requests_total");
        assert_eq!(samples[0].label("route"), Some("/orders/{id}"));
        assert_eq!(samples[0].label("status"), Some("200"));
        assert_eq!(samples[0].label("absent"), None);
        assert_eq!(samples[0].value, 7.0);
        assert_eq!(samples[1].label("le"), Some("+Inf"));
        assert_eq!(samples[1].label("route"), Some("/x"));
        assert_eq!(samples[3].name, "mall_process_cpu_seconds_total");
        assert_eq!(samples[3].value, 1.25, "the timestamp is not the value");
        assert_eq!(samples[4].value, 2.0, "the exemplar is not the value");
    }

    #[test]
    fn escaped_label_values_are_read_back() {
        let [sample] = &all(r#"m{a="say \"hi\"\\n",b="line\nbreak",c="{,}"} +Inf"#)[..] else {
            panic!("one sample");
        };
        assert_eq!(sample.label("a"), Some(r#"say "hi"\n"#));
        assert_eq!(sample.label("b"), Some("line\nbreak"));
        assert_eq!(sample.label("c"), Some("{,}"));
        assert_eq!(sample.value, f64::INFINITY);
    }

    #[test]
    fn a_line_that_is_not_a_sample_is_an_error_naming_it() {
        for broken in [
            "m{a=\"unclosed} 1",
            "m{a=unquoted} 1",
            "m 1\nm{a=\"1\"}",
            "m not-a-number",
            "{a=\"1\"} 1",
        ] {
            let error = samples(broken)
                .find_map(Result::err)
                .unwrap_or_else(|| panic!("{broken:?} read"));
            assert!(error.starts_with("line "), "{error}");
        }
    }
}
