// The queue by state and by destination (count, oldest, last error), operator only.

import { get } from '../api.js';
import { h, clear, section, table } from '../dom.js';
import { barList } from '../chart.js';
import { when, count, text } from '../format.js';

export async function render(ctx, main) {
  const [q, summary] = await Promise.all([get('/v1/queue'), get('/v1/queue/summary').catch(() => ({}))]);
  const byState = summary.recipients_by_state || q.by_state || {};
  const dests = summary.destinations || summary.by_destination || q.by_domain || [];
  clear(main, h('h1', {}, 'Queue'),
    section('Recipients by state', barList({ title: 'Recipients by state', rows: Object.entries(byState).map(([label, value]) => ({ label, value: Number(value) || 0 })) })),
    section('By destination', table([
      ['Destination', d => text(d.destination ?? d.domain)],
      ['Pending', d => count(d.pending ?? d.count)],
      ['Oldest', d => when(d.oldest ?? d.oldest_at)],
      ['Last error', d => h('span', { class: 'wrap' }, text(d.last_error))],
    ], dests, { class: 'destinations', empty: 'The queue is empty.' })));
}
