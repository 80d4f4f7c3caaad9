// Nodes sharing the store (GET /v1/nodes), operator only.

import { get } from '../api.js';
import { h, clear, table } from '../dom.js';
import { when, text } from '../format.js';

export async function render(ctx, main) {
  const data = await get('/v1/nodes');
  const nodes = data.nodes || [];
  const cols = nodes.length ? Object.keys(nodes[0]) : [];
  clear(main, h('h1', {}, 'Nodes'), table(cols.map(k => [k.replace(/_/g, ' '), n => (/(_at|seen|_ms)$/.test(k) && typeof n[k] === 'number' && n[k] > 1e12 ? when(n[k]) : text(n[k]))]), nodes, { class: 'nodes', empty: 'No node has reported yet.' }));
}
