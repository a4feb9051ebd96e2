//! The boot chart: a self-contained SVG with one row per thread, a bar per
//! call coloured by domain and labelled with its cookie, waits drawn as
//! hatched bands behind the calls, and a time axis in milliseconds.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::{CallRecord, Timeline, WaitRecord};

const LABEL_WIDTH: f64 = 170.0;
const PLOT_WIDTH: f64 = 1000.0;
const RIGHT_MARGIN: f64 = 20.0;
const TOP: f64 = 44.0;
const ROW: f64 = 22.0;
const BAR: f64 = 16.0;
const LEGEND_ROW: f64 = 18.0;

/// Distinct, colour-blind-friendly fills, one per domain in order of first
/// appearance (repeating past ten domains).
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac", "#e15759",
];

/// Writes well-formed XML: every attribute value and text is escaped, and
/// elements are closed in the order they were opened.
pub(super) struct SvgWriter {
    out: String,
    open: Vec<&'static str>,
}

impl SvgWriter {
    pub(super) fn new() -> SvgWriter {
        SvgWriter {
            out: String::new(),
            open: Vec::new(),
        }
    }

    fn start_tag(&mut self, tag: &'static str, attrs: &[(&str, String)]) {
        self.out.push('<');
        self.out.push_str(tag);
        for (name, value) in attrs {
            let _ = write!(self.out, " {name}=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
    }

    /// Opens `<tag attrs>`; close it with [`SvgWriter::close`].
    pub(super) fn open(&mut self, tag: &'static str, attrs: &[(&str, String)]) {
        self.start_tag(tag, attrs);
        self.out.push('>');
        self.open.push(tag);
    }

    /// Writes `<tag attrs/>`.
    pub(super) fn empty(&mut self, tag: &'static str, attrs: &[(&str, String)]) {
        self.start_tag(tag, attrs);
        self.out.push_str("/>");
    }

    /// Writes escaped text inside the open element.
    pub(super) fn text(&mut self, text: &str) {
        escape_into(&mut self.out, text);
    }

    /// Writes `<tag attrs>text</tag>`.
    pub(super) fn element(&mut self, tag: &'static str, attrs: &[(&str, String)], text: &str) {
        self.open(tag, attrs);
        self.text(text);
        self.close();
    }

    /// Closes the innermost open element.
    pub(super) fn close(&mut self) {
        if let Some(tag) = self.open.pop() {
            let _ = write!(self.out, "</{tag}>");
        }
    }

    /// Closes whatever is still open and returns the document.
    pub(super) fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab and newlines are not allowed in XML 1.0.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

/// Shorthand for an attribute list entry.
fn a(name: &'static str, value: impl ToString) -> (&'static str, String) {
    (name, value.to_string())
}

/// A round tick step (1, 2 or 5 times a power of ten) giving at most about
/// ten ticks over `span_ms`.
fn tick_step(span_ms: f64) -> f64 {
    let raw = (span_ms / 10.0).max(1e-3);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// Something drawn on a thread's row.
enum Mark<'a> {
    Call(&'a CallRecord),
    Wait(&'a WaitRecord),
}

impl Mark<'_> {
    /// Its row and its extent.
    fn place(&self) -> (usize, Instant, Instant) {
        match self {
            Mark::Call(call) => (call.thread, call.started, call.finished),
            Mark::Wait(wait) => (wait.thread, wait.started, wait.finished),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(super) fn render(timeline: &Timeline) -> String {
    // The axis starts at the first recorded activity, not at runtime build.
    let begin = timeline
        .calls
        .iter()
        .map(|c| c.started)
        .chain(timeline.waits.iter().map(|w| w.started))
        .min()
        .unwrap_or(timeline.origin);
    let end = timeline
        .calls
        .iter()
        .map(|c| c.finished)
        .chain(timeline.waits.iter().map(|w| w.finished))
        .max()
        .unwrap_or(begin);
    let span_ms = ms(end.saturating_duration_since(begin)).max(1e-3);
    let scale = PLOT_WIDTH / span_ms;
    let x_of = |at: Instant| LABEL_WIDTH + ms(at.saturating_duration_since(begin)) * scale;

    let mut domains: Vec<&str> = Vec::new();
    for call in &timeline.calls {
        if !domains.contains(&&*call.domain) {
            domains.push(&call.domain);
        }
    }
    let colour = |domain: &str| PALETTE[domains.iter().position(|d| *d == domain).unwrap_or(0) % PALETTE.len()];

    let rows = timeline.threads.len().max(1) as f64;
    let plot_bottom = TOP + rows * ROW;
    let legend_top = plot_bottom + 34.0;
    let width = LABEL_WIDTH + PLOT_WIDTH + RIGHT_MARGIN;
    let height = legend_top + (domains.len() as f64 + 1.0) * LEGEND_ROW + 8.0;

    let mut svg = SvgWriter::new();
    svg.open(
        "svg",
        &[
            a("xmlns", "http://www.w3.org/2000/svg"),
            a("width", width),
            a("height", height),
            a("viewBox", format!("0 0 {width} {height}")),
            a("font-family", "DejaVu Sans, Helvetica, Arial, sans-serif"),
            a("font-size", 11),
        ],
    );
    svg.open("defs", &[]);
    svg.open(
        "pattern",
        &[
            a("id", "wait-hatch"),
            a("width", 6),
            a("height", 6),
            a("patternUnits", "userSpaceOnUse"),
            a("patternTransform", "rotate(45)"),
        ],
    );
    // See-through, so a wait inside a call still shows the call's colour.
    svg.empty(
        "rect",
        &[
            a("width", 6),
            a("height", 6),
            a("fill", "#fff"),
            a("fill-opacity", 0.55),
        ],
    );
    svg.empty(
        "line",
        &[
            a("x1", 0),
            a("y1", 0),
            a("x2", 0),
            a("y2", 6),
            a("stroke", "#444"),
            a("stroke-width", 1.5),
        ],
    );
    svg.close();
    svg.close();
    svg.empty("rect", &[a("width", "100%"), a("height", "100%"), a("fill", "white")]);
    let title = format!(
        "kasync timeline: {} calls on {} threads, {:.2} ms",
        timeline.calls.len(),
        timeline.threads.len(),
        span_ms
    );
    svg.element(
        "text",
        &[a("x", 8), a("y", 16), a("font-size", 13), a("font-weight", "bold")],
        &title,
    );

    // Time axis: ticks and grid lines.
    let step = tick_step(span_ms);
    svg.open("g", &[a("class", "axis")]);
    let mut tick = 0.0;
    while tick <= span_ms + step * 1e-9 {
        let x = LABEL_WIDTH + tick * scale;
        svg.empty(
            "line",
            &[
                a("x1", x),
                a("y1", TOP - 4.0),
                a("x2", x),
                a("y2", plot_bottom),
                a("stroke", "#ddd"),
            ],
        );
        svg.element(
            "text",
            &[
                a("x", x),
                a("y", TOP - 8.0),
                a("text-anchor", "middle"),
                a("fill", "#555"),
            ],
            &format!("{}", (tick * 1000.0).round() / 1000.0),
        );
        tick += step;
    }
    svg.element(
        "text",
        &[a("x", 8), a("y", TOP - 8.0), a("fill", "#555")],
        "ms since first call",
    );
    svg.close();

    // One row per thread.
    for thread in &timeline.threads {
        let y = TOP + thread.index as f64 * ROW;
        if thread.index % 2 == 1 {
            svg.empty(
                "rect",
                &[
                    a("x", 0),
                    a("y", y),
                    a("width", width),
                    a("height", ROW),
                    a("fill", "#000"),
                    a("fill-opacity", 0.03),
                ],
            );
        }
        svg.element("text", &[a("x", 8), a("y", y + ROW / 2.0 + 4.0)], &thread.name);
    }

    // Painter's order: on one thread, a call that waits contains its wait,
    // which contains the calls it helped with. Drawing by start time (longer
    // first on ties) puts each of them on top of what contains it.
    let mut marks: Vec<Mark<'_>> = timeline
        .calls
        .iter()
        .map(Mark::Call)
        .chain(timeline.waits.iter().map(Mark::Wait))
        .collect();
    marks.sort_by_key(|mark| {
        let (_, started, finished) = mark.place();
        (started, std::cmp::Reverse(finished))
    });
    for mark in marks {
        let (thread, started, finished) = mark.place();
        let y = TOP + thread as f64 * ROW + (ROW - BAR) / 2.0;
        let x = x_of(started);
        let w = (x_of(finished) - x).max(1.0);
        let took = ms(finished.saturating_duration_since(started));
        let mut attrs = vec![a("x", x), a("y", y), a("width", w), a("height", BAR)];
        let title = match mark {
            Mark::Wait(wait) => {
                attrs.extend([
                    a("class", "wait"),
                    a("fill", "url(#wait-hatch)"),
                    a("stroke", "#555"),
                    a("stroke-dasharray", if wait.blocking { "none" } else { "3,2" }),
                ]);
                format!("{}: waited {took:.3} ms, helped with {} calls", wait.what, wait.helped)
            }
            Mark::Call(call) => {
                attrs.extend([
                    a("class", "call"),
                    a("rx", 2),
                    a("fill", colour(&call.domain)),
                    a("stroke", if call.panicked { "#d00" } else { "#fff" }),
                    a("stroke-width", if call.panicked { 2 } else { 1 }),
                ]);
                let queued = ms(call.started.saturating_duration_since(call.queued));
                format!(
                    "{} #{}: ran {took:.3} ms after {queued:.3} ms queued{}{}",
                    call.domain,
                    call.cookie,
                    if call.helped { ", helped" } else { "" },
                    if call.panicked { ", panicked" } else { "" },
                )
            }
        };
        svg.open("rect", &attrs);
        svg.element("title", &[], &title);
        svg.close();
        if let Mark::Call(call) = mark {
            let label = call.cookie.to_string();
            if w >= 7.0 * label.len() as f64 + 4.0 {
                svg.element(
                    "text",
                    &[a("x", x + 3.0), a("y", y + BAR - 4.0), a("fill", "white")],
                    &label,
                );
            }
        }
    }

    // Legend: one swatch per domain, then the wait pattern.
    for (n, domain) in domains.iter().enumerate() {
        let y = legend_top + n as f64 * LEGEND_ROW;
        svg.empty(
            "rect",
            &[
                a("x", LABEL_WIDTH),
                a("y", y),
                a("width", 14),
                a("height", 12),
                a("fill", colour(domain)),
            ],
        );
        svg.element("text", &[a("x", LABEL_WIDTH + 20.0), a("y", y + 10.0)], domain);
    }
    let y = legend_top + domains.len() as f64 * LEGEND_ROW;
    svg.empty(
        "rect",
        &[
            a("x", LABEL_WIDTH),
            a("y", y),
            a("width", 14),
            a("height", 12),
            a("fill", "url(#wait-hatch)"),
            a("stroke", "#777"),
        ],
    );
    svg.element(
        "text",
        &[a("x", LABEL_WIDTH + 20.0), a("y", y + 10.0)],
        "waiting on a barrier (dashed: .await)",
    );
    svg.finish()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn writer_escapes_and_nests() {
        let mut svg = SvgWriter::new();
        svg.open("g", &[a("class", "a\"b<c>&'")]);
        svg.element("text", &[], "x < y & \u{1}");
        svg.empty("rect", &[a("width", 2)]);
        assert_eq!(
            svg.finish(),
            "<g class=\"a&quot;b&lt;c&gt;&amp;&apos;\"><text>x &lt; y &amp; \u{fffd}</text><rect width=\"2\"/></g>"
        );
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(100.0), 10.0);
        assert_eq!(tick_step(45.0), 5.0);
        assert_eq!(tick_step(2031.0), 500.0);
        assert!((tick_step(0.3) - 0.05).abs() < 1e-12);
    }
}
