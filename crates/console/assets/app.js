// The console's shell: the session, the navigation (hash routes such as
// #/messages/ID), the operator's tenant picker, and which page module draws <main>.

import { api, get, setCsrf, onSignedOut, ApiError } from './api.js';
import { h, clear, errorBox, toast } from './dom.js';
import * as signin from './pages/signin.js';
import * as overview from './pages/overview.js';
import * as messages from './pages/messages.js';
import * as message from './pages/message.js';
import * as domains from './pages/domains.js';
import * as keys from './pages/keys.js';
import * as webhooks from './pages/webhooks.js';
import * as suppressions from './pages/suppressions.js';
import * as quarantine from './pages/quarantine.js';
import * as tenants from './pages/tenants.js';
import * as queue from './pages/queue.js';
import * as nodes from './pages/nodes.js';

// [hash pattern, page module, nav label (null: not in the menu), operator only]
const ROUTES = [
  [/^overview$/, overview, 'Overview', false],
  [/^messages$/, messages, 'Messages', false],
  [/^messages\/([^/]+)$/, message, null, false],
  [/^domains$/, domains, 'Domains', false],
  [/^domains\/([^/]+)$/, domains, null, false],
  [/^keys$/, keys, 'Keys', false],
  [/^webhooks$/, webhooks, 'Webhooks', false],
  [/^webhooks\/([^/]+)$/, webhooks, null, false],
  [/^suppressions$/, suppressions, 'Suppressions', false],
  [/^quarantine$/, quarantine, 'Quarantine', false],
  [/^tenants$/, tenants, 'Tenants', true],
  [/^tenants\/([^/]+)$/, tenants, null, true],
  [/^queue$/, queue, 'Queue', true],
  [/^nodes$/, nodes, 'Nodes', true],
];

const main = document.getElementById('main');
let session = null;
let cleanup = null;
let tenantList = [];

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = raw.split('?');
  return { path: path || 'overview', query: new URLSearchParams(query) };
}

export function go(path) { location.hash = `#/${path}`; }

/** The tenant the operator looks at (picker), or the tenant's own id. */
function actingTenant() {
  if (!session) return null;
  if (session.role === 'tenant') return session.tenant;
  return sessionStorage.getItem('mailroom.tenant') || tenantList[0]?.id || null;
}

function showShell(on) {
  document.getElementById('top').hidden = !on;
}

function drawNav(active) {
  const nav = document.getElementById('nav');
  clear(nav, h('ul', {}, ROUTES.filter(r => r[2] && (!r[3] || session.role === 'operator')).map(r => {
    const target = r[0].source.replace(/^\^|\$$/g, '');
    return h('li', {}, h('a', { href: `#/${target}`, 'aria-current': active.startsWith(target) ? 'page' : false }, r[2]));
  })));
  const who = document.getElementById('who');
  who.textContent = session.role === 'operator' ? 'Operator' : `Tenant ${session.tenant_name || session.tenant}`;
}

async function loadTenants() {
  const pick = document.getElementById('tenant-pick');
  const label = document.getElementById('tenant-pick-label');
  if (session.role !== 'operator') {
    pick.hidden = label.hidden = true;
    if (!session.tenant_name) try { session.tenant_name = (await get(`/v1/tenants/${encodeURIComponent(session.tenant)}`)).name; } catch { /* the id will do */ }
    return;
  }
  try {
    tenantList = (await get('/v1/tenants')).tenants || [];
  } catch { tenantList = []; }
  const current = actingTenant();
  clear(pick, tenantList.length ? tenantList.map(t => h('option', { value: t.id, selected: t.id === current }, t.name || t.id))
    : h('option', { value: '' }, 'no tenants yet'));
  pick.hidden = label.hidden = false;
}

let generation = 0;

async function render() {
  const mine = ++generation;
  if (cleanup) { try { cleanup(); } catch { /* page already gone */ } cleanup = null; }
  // A page whose render finishes after a newer one started is stopped at once.
  const keep = fn => { if (mine === generation) cleanup = fn || null; else if (fn) fn(); };
  const { path, query } = parseHash();
  if (!session) {
    showShell(false);
    const next = path === 'signin' ? (query.get('next') || 'overview') : path + (query.toString() ? `?${query}` : '');
    if (path !== 'signin') { location.replace(`#/signin?next=${encodeURIComponent(next)}`); return; }
    document.title = 'Sign in · Mailroom';
    keep(await signin.render({ main, next, onSignedIn: s => started(s, next) }));
    return;
  }
  if (path === 'signin') { go(query.get('next') || 'overview'); return; }
  showShell(true);
  drawNav(path);
  const route = ROUTES.find(r => r[0].test(path) && (!r[3] || session.role === 'operator'));
  clear(main);
  if (!route) {
    document.title = 'Not found · Mailroom';
    main.append(h('h1', {}, 'Not found'), h('p', {}, 'There is no such page. ', h('a', { href: '#/overview' }, 'Back to the overview')));
    return;
  }
  const params = path.match(route[0]).slice(1).map(decodeURIComponent);
  document.title = `${route[2] || path.split('/')[0]} · Mailroom`;
  const ctx = { session, params, query, tenant: actingTenant(), tenants: tenantList, go, refresh: render };
  try {
    keep(await route[1].render(ctx, main));
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      clear(main, h('h1', {}, 'Not found'), h('p', { class: 'notice error', role: 'alert' }, e.message));
    } else if (!(e instanceof ApiError && e.status === 401)) {
      main.append(errorBox(e));
    }
  }
  if (mine === generation) main.focus({ preventScroll: true });
}

async function started(s, next) {
  session = s;
  setCsrf(s.csrf_token);
  await loadTenants();
  if (next !== undefined && location.hash !== `#/${next}`) location.hash = `#/${next}`; // hashchange renders
  else await render();
}

onSignedOut(() => {
  if (!session) return;
  session = null;
  setCsrf('');
  toast('Signed out: please sign in again.', 'error');
  render();
});

document.getElementById('logout').addEventListener('click', async () => {
  try { await api('DELETE', '/v1/session', undefined, { quiet401: true }); } catch { /* gone already */ }
  session = null;
  setCsrf('');
  sessionStorage.removeItem('mailroom.tenant');
  location.hash = '#/signin';
  render();
});

document.getElementById('tenant-pick').addEventListener('change', e => {
  sessionStorage.setItem('mailroom.tenant', e.target.value);
  render();
});

document.getElementById('menu-toggle').addEventListener('click', e => {
  const nav = document.getElementById('nav');
  const open = nav.classList.toggle('open');
  e.target.setAttribute('aria-expanded', String(open));
});

window.addEventListener('hashchange', () => {
  document.getElementById('nav').classList.remove('open');
  render();
});

(async () => {
  try {
    const s = await get('/v1/session', { quiet401: true });
    await started(s);
  } catch {
    session = null;
    render();
  }
})();
