// Overview: counters over the last hour (by minute), 24 hours (by hour) or 30 days (by
// day) from GET /v1/stats, rates against the sender-health thresholds, the queue depth
// by state and the recipient domains. Redraws itself every few seconds.

import { get, qs, enc } from '../api.js';
import { h, clear, section, table, errorBox } from '../dom.js';
import { lineChart, barList } from '../chart.js';
import { count, pct } from '../format.js';

export const REFRESH_MS = 3000;

const OUTCOMES = [
  ['accepted', 'Accepted'], ['delivered', 'Delivered'], ['deferred', 'Deferred'],
  ['bounced_hard', 'Bounced (hard)'], ['bounced_soft', 'Bounced (soft)'], ['complained', 'Complained'],
  ['suppressed', 'Suppressed'],
];
const ENGAGEMENT = [['opened', 'Opened'], ['clicked', 'Clicked']];

const PERIODS = {
  hour: { period: 'minute', n: 60, step: 60e3, label: 'Last hour (by minute)', fmt: d => d.toTimeString().slice(0, 5) },
  day: { period: 'hour', n: 24, step: 3600e3, label: 'Last 24 hours (by hour)', fmt: d => `${d.toTimeString().slice(0, 2)}h` },
  month: { period: 'day', n: 30, step: 86400e3, label: 'Last 30 days (by day)', fmt: d => `${d.getUTCMonth() + 1}/${d.getUTCDate()}` },
};

/** Bucket start times (UTC-aligned) oldest first, ending with the current bucket. */
function bucketStarts(p, now) {
  const end = Math.floor(now / p.step) * p.step;
  return Array.from({ length: p.n }, (_, i) => end - (p.n - 1 - i) * p.step);
}

function sum(buckets, key) { return buckets.reduce((a, b) => a + (b[key] || 0), 0); }

export async function render(ctx, main) {
  const range = ctx.query.get('range') in PERIODS ? ctx.query.get('range') : 'hour';
  const p = PERIODS[range];
  const split = ctx.query.get('split') === 'provider' ? 'provider' : 'domain';
  const body = h('div', { id: 'overview-body' });
  const stamp = h('span', { class: 'muted', id: 'updated' });
  clear(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), stamp),
    h('nav', { class: 'tabs', 'aria-label': 'Time range' }, Object.entries(PERIODS).map(([k, v]) =>
      h('a', { href: `#/overview?range=${k}&split=${split}`, 'aria-current': k === range ? 'page' : false }, v.label))),
    body);
  const tenantScope = ctx.session.role === 'tenant' ? ctx.session.tenant : '';

  async function draw() {
    const now = Date.now();
    const starts = bucketStarts(p, now);
    const from = new Date(starts[0]).toISOString();
    const to = new Date(starts[starts.length - 1] + p.step).toISOString();
    const [stats, byDomain, queue, health] = await Promise.all([
      get(`/v1/stats${qs({ period: p.period, from, to, group_by: 'none' })}`),
      get(`/v1/stats${qs({ period: p.period, from, to, group_by: split })}`).catch(() => null),
      get('/v1/queue/summary').catch(() => null),
      ctx.tenant ? get(`/v1/tenants/${enc(ctx.tenant)}/health`).catch(() => null) : null,
    ]);
    const index = new Map(starts.map((t, i) => [t, i]));
    const filled = starts.map(t => ({ start: t }));
    for (const b of stats.buckets || []) {
      const i = index.get(Math.floor(Date.parse(b.start) / p.step) * p.step);
      if (i === undefined) continue;
      for (const [k] of [...OUTCOMES, ...ENGAGEMENT]) filled[i][k] = (filled[i][k] || 0) + (b[k] || 0);
    }
    const labels = starts.map(t => p.fmt(new Date(t)));
    const mk = list => list.map(([key, name]) => ({ key, name, values: filled.map(b => b[key] || 0) }));
    const totals = Object.fromEntries([...OUTCOMES, ...ENGAGEMENT].map(([k]) => [k, sum(filled, k)]));
    const bounced = totals.bounced_hard + totals.bounced_soft;
    const settled = totals.delivered + bounced;
    const rates = stats.rates || {};
    const thresholds = stats.thresholds || health?.thresholds || {};
    const rateRows = [
      ['Delivery rate', rates.delivery ?? (settled ? totals.delivered / settled : null), null, null],
      ['Bounce rate', rates.bounce ?? (settled ? bounced / settled : null), thresholds.bounce_warn ?? thresholds.bounce_rate, thresholds.bounce_pause],
      ['Complaint rate', rates.complaint ?? (totals.delivered ? totals.complained / totals.delivered : null), thresholds.complaint_warn ?? thresholds.complaint_rate, thresholds.complaint_pause],
    ];

    const tiles = h('div', { class: 'tiles' }, [...OUTCOMES, ...ENGAGEMENT].map(([k, name]) =>
      h('div', { class: `tile tile-${k}`, id: `total-${k}` }, h('span', { class: 'tile-label' }, name), h('strong', { class: 'tile-value' }, count(totals[k])))));

    const rateTable = table([
      ['Rate', r => r[0]],
      ['Now', r => h('span', { class: r[2] != null && r[1] != null && r[1] > r[2] ? 'bad' : 'good' }, pct(r[1]))],
      ['Warn at', r => (r[2] != null ? pct(r[2]) : '—')],
      ['Paused at', r => (r[3] != null ? pct(r[3]) : '—')],
    ], rateRows, { caption: tenantScope && health?.level ? `Sender health: ${health.level} (tenant ${health.status}); rates over this period` : 'Rates over this period, against the sender-health thresholds' });

    const byState = queue?.recipients_by_state || queue?.by_state || {};
    const queueBars = barList({ title: 'Recipients by state', rows: Object.entries(byState).map(([label, value]) => ({ label, value: Number(value) || 0 })) });

    // Per recipient domain (or mailbox provider): the API's own groups with their rates;
    // older servers only give buckets, which are summed here.
    let domains = (byDomain?.groups || []).map(g => ({ group: g.group ?? '(none)', ...g.counts, rates: g.rates }));
    if (!domains.length && byDomain?.buckets?.some(b => b.group)) {
      const acc = new Map();
      for (const b of byDomain.buckets) {
        if (!b.group) continue;
        const g = acc.get(b.group) || { group: b.group };
        for (const [k] of OUTCOMES) g[k] = (g[k] || 0) + (b[k] || 0);
        acc.set(b.group, g);
      }
      domains = [...acc.values()];
    }
    domains = domains.sort((a, b) => (b.accepted + b.delivered) - (a.accepted + a.delivered)).slice(0, 10);
    const rate = (g, k) => {
      if (g.rates && g.rates[k] !== undefined) return pct(g.rates[k]);
      const settled2 = g.delivered + g.bounced_hard + g.bounced_soft;
      const v = { delivery: g.delivered / settled2, bounce: (g.bounced_hard + g.bounced_soft) / settled2, deferral: g.deferred / (g.deferred + settled2) }[k];
      return Number.isFinite(v) ? pct(v) : '—';
    };

    clear(body,
      tiles,
      h('div', { class: 'grid2' },
        lineChart({ title: `Outcomes — ${p.label}`, labels, series: mk(OUTCOMES) }),
        lineChart({ title: `Opens and clicks — ${p.label}`, labels, series: mk(ENGAGEMENT) })),
      h('div', { class: 'grid2' },
        section('Rates', rateTable),
        section('Queue depth by state', queueBars)),
      section(split === 'provider' ? 'Mailbox providers' : 'Recipient domains',
        h('nav', { class: 'tabs', 'aria-label': 'Group by' },
          h('a', { href: `#/overview?range=${range}&split=domain`, 'aria-current': split === 'domain' ? 'page' : false }, 'Domains'),
          h('a', { href: `#/overview?range=${range}&split=provider`, 'aria-current': split === 'provider' ? 'page' : false }, 'Providers')),
        table([
          [split === 'provider' ? 'Provider' : 'Domain', g => g.group],
          ['Accepted', g => count(g.accepted)],
          ['Delivered', g => count(g.delivered)],
          ['Delivery rate', g => rate(g, 'delivery')],
          ['Deferral rate', g => rate(g, 'deferral')],
          ['Bounce rate', g => rate(g, 'bounce')],
        ], domains, { empty: 'No mail in this period yet.', class: 'domains' })));
    stamp.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  let timer = null;
  let stopped = false;
  const loop = async () => {
    try { await draw(); } catch (e) { if (!stopped) clear(body, errorBox(e)); if (e.status === 401) return; }
    if (!stopped) timer = setTimeout(loop, REFRESH_MS);
  };
  await loop();
  return () => { stopped = true; clearTimeout(timer); };
}
