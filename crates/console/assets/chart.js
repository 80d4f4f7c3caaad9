// Small SVG charts, generated here (no library): a multi-series line chart over time
// buckets and a horizontal bar list. Each point carries a <title> for hover/focus.

const NS = 'http://www.w3.org/2000/svg';

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

export const COLORS = {
  accepted: '#2457c5', delivered: '#1f9d55', deferred: '#d89614', bounced_hard: '#c53030',
  bounced_soft: '#e07b53', complained: '#8e3fb7', suppressed: '#6b7280', opened: '#0e9aa7', clicked: '#3d5afe',
};

/** A top of scale at or above v whose quarters are whole numbers. */
function niceMax(v) {
  if (v <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(v));
  let top = v;
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) { top = m * p; break; }
  return Math.ceil(top / 4) * 4;
}

/**
 * series: [{name, key, values: number[]}]; labels: string[] (one per bucket).
 * Returns <figure> with the SVG and a legend.
 */
export function lineChart({ title, labels, series, width = 720, height = 220 }) {
  const pad = { l: 40, r: 10, t: 10, b: 28 };
  const w = width - pad.l - pad.r;
  const hgt = height - pad.t - pad.b;
  const max = niceMax(Math.max(0, ...series.flatMap(x => x.values)));
  const n = Math.max(labels.length, 1);
  const x = i => pad.l + (n === 1 ? w / 2 : (i * w) / (n - 1));
  const y = v => pad.t + hgt - (v / max) * hgt;
  const total = series.reduce((a, x2) => a + x2.values.reduce((p, q) => p + q, 0), 0);
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title, class: 'chart', 'data-total': total, 'data-max': max });
  svg.append(s('title', {}, title));
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    svg.append(s('line', { x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v), class: 'grid' }),
      s('text', { x: pad.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, Number.isInteger(v) ? v : v.toFixed(1)));
  }
  const every = Math.ceil(n / 6);
  labels.forEach((l, i) => {
    const last = i === n - 1;
    if ((i % every === 0 && n - 1 - i >= every / 2) || last) svg.append(s('text', { x: x(i), y: height - 8, 'text-anchor': last ? 'end' : 'middle', class: 'axis' }, l));
  });
  for (const ser of series) {
    const color = COLORS[ser.key] || '#444';
    const d = ser.values.map((v, i) => `${i ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join('');
    svg.append(s('path', { d, fill: 'none', stroke: color, 'stroke-width': 2, class: `series series-${ser.key}`, 'data-sum': ser.values.reduce((a, b) => a + b, 0) }));
    ser.values.forEach((v, i) => {
      if (v > 0) svg.append(s('circle', { cx: x(i), cy: y(v), r: 3, fill: color }, s('title', {}, `${ser.name} ${labels[i]}: ${v}`)));
    });
  }
  const legend = document.createElement('ul');
  legend.className = 'legend';
  for (const ser of series) {
    const li = document.createElement('li');
    const sw = s('svg', { width: 12, height: 12, 'aria-hidden': 'true' }, s('rect', { width: 12, height: 12, rx: 2, fill: COLORS[ser.key] || '#444' }));
    li.append(sw, ` ${ser.name} (${ser.values.reduce((a, b) => a + b, 0)})`);
    legend.append(li);
  }
  const fig = document.createElement('figure');
  fig.className = 'chart-box';
  const cap = document.createElement('figcaption');
  cap.textContent = title;
  fig.append(cap, svg, legend);
  return fig;
}

/** rows: [{label, value, key?}] as horizontal bars. */
export function barList({ title, rows, width = 560 }) {
  const rowH = 26;
  const height = Math.max(rows.length, 1) * rowH + 4;
  const max = Math.max(1, ...rows.map(r => r.value));
  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title, class: 'chart bars' });
  svg.append(s('title', {}, title));
  rows.forEach((r, i) => {
    const bw = ((width - 200) * r.value) / max;
    const yy = i * rowH + 2;
    svg.append(
      s('text', { x: 0, y: yy + 16, class: 'axis' }, r.label),
      s('rect', { x: 130, y: yy + 4, width: Math.max(bw, r.value ? 2 : 0), height: rowH - 10, rx: 3, fill: COLORS[r.key] || '#2457c5' }, s('title', {}, `${r.label}: ${r.value}`)),
      s('text', { x: 136 + bw, y: yy + 16, class: 'axis' }, r.value));
  });
  return svg;
}
