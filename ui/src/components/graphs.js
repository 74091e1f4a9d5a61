// An instance's last hour: CPU, memory, network and disk, drawn with uPlot from the samples
// the daemon keeps (GET /1.0/instances/NAME/metrics), refreshed as new samples arrive.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import { html } from "../html.js";
import { ErrorBox, bytes, useResource } from "./common.js";

/** Per-second rates of a counter between consecutive samples (the first sample has none). */
function rates(samples, key) {
  return samples.map((s, i) => {
    if (i === 0) return null;
    const before = samples[i - 1];
    const seconds = s.time - before.time;
    const delta = s[key] - before[key];
    return seconds > 0 && delta >= 0 ? delta / seconds : null;
  });
}

const CHARTS = [
  { id: "cpu", title: "CPU (% of one CPU)", series: [["CPU", (s) => rates(s, "cpu_seconds").map((v) => (v === null ? null : 100 * v))]], unit: (v) => `${v.toFixed(1)} %` },
  { id: "memory", title: "Memory", series: [["Used", (s) => s.map((p) => p.memory_bytes)]], unit: bytes },
  { id: "network", title: "Network (per second)", series: [
    ["Received", (s) => rates(s, "network_receive_bytes")],
    ["Sent", (s) => rates(s, "network_transmit_bytes")],
  ], unit: bytes },
  { id: "disk", title: "Root filesystem used", series: [["Used", (s) => s.map((p) => p.disk_used_bytes)]], unit: bytes },
];
const COLOURS = ["#2f6fdf", "#e0762b"];

function Chart({ chart, samples }) {
  const box = useRef(null);
  const plot = useRef(null);
  const data = [samples.map((s) => s.time), ...chart.series.map(([, make]) => make(samples))];
  useEffect(() => {
    const options = {
      width: Math.max(320, box.current.clientWidth || 600),
      height: 180,
      series: [{}, ...chart.series.map(([label], i) => ({ label, stroke: COLOURS[i], width: 2, value: (u, v) => (v === null ? "" : chart.unit(v)) }))],
      axes: [{}, { values: (u, ticks) => ticks.map((t) => chart.unit(t)), size: 80 }],
      scales: { x: { time: true } },
    };
    plot.current = new uPlot(options, data, box.current);
    return () => plot.current.destroy();
  }, []);
  useEffect(() => { plot.current?.setData(data); }, [samples]);
  return html`<div class="chart" data-chart=${chart.id} data-points=${samples.length}>
    <h3>${chart.title}</h3><div ref=${box}></div></div>`;
}

export function Graphs({ instance }) {
  const { data, error } = useResource(`/1.0/instances/${encodeURIComponent(instance)}/metrics`, { every: 10000 });
  if (error?.status === 404 && !data) {
    return html`<p class="empty">This server keeps no history of its instances' metrics
      (GET /1.0/instances/NAME/metrics is a Stapes addition; Incus has none).</p>`;
  }
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!data) return html`<p class="loading">Loading…</p>`;
  return html`<div class="graphs">
    <p class="note">${data.samples.length} samples, one every ${data.interval} s, over the last hour (while the instance runs).</p>
    ${CHARTS.map((chart) => html`<${Chart} chart=${chart} samples=${data.samples} />`)}
  </div>`;
}
