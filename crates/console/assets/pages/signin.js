// Sign-in: the operator token or a tenant API key is exchanged for a session cookie
// (POST /v1/session); the token itself is not kept by the page.

import { api } from '../api.js';
import { h, clear, field } from '../dom.js';

export async function render({ main, next, onSignedIn }) {
  const token = h('input', { name: 'token', type: 'password', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const status = h('p', { class: 'notice error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { class: 'card signin', id: 'signin-form', on: { submit: async e => {
    e.preventDefault();
    submit.disabled = true;
    status.hidden = true;
    try {
      const s = await api('POST', '/v1/session', { token: token.value.trim() }, { quiet401: true });
      token.value = '';
      await onSignedIn(s);
    } catch (err) {
      status.textContent = err.status === 429 ? `Too many failed sign-ins: ${err.message}`
        : err.status === 401 ? 'That token is not valid (or was revoked).' : err.message;
      status.hidden = false;
    } finally { submit.disabled = false; }
  } } },
  h('img', { src: 'logo.svg', alt: '', width: 40, height: 40 }),
  h('h1', {}, 'Sign in to Mailroom'),
  h('p', { class: 'muted' }, 'Use the operator token (data/operator-token on the server) or one of your tenant’s API keys.'),
  field('Operator token or API key', token),
  status, submit);
  clear(main, form);
  token.focus();
}
