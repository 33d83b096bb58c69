// sealrelay broker admin page. No framework, no build step. The admin token
// lives only in the `token` variable below (never in storage, cookies or
// the URL) and is sent as a bearer header on every API call; all data is
// inserted with textContent, never as HTML. A minted registration token is
// likewise only put in the page (never logged or stored) until "Hide
// token" or a reload.
'use strict';

(function () {
  let token = '';
  let pending = null; // action waiting for the confirmation dialog
  let minting = null; // installation the "New registration token" dialog is for

  const $ = (sel) => document.querySelector(sel);

  function setStatus(text, isError) {
    const s = $('#status');
    s.textContent = text;
    s.classList.toggle('error', !!isError);
  }

  async function api(method, path, body) {
    const opts = { method, headers: { 'Authorization': 'Bearer ' + token }, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch('/admin/api/' + path, opts);
    let data;
    try { data = await resp.json(); } catch (e) { data = { ok: false, error: 'HTTP ' + resp.status }; }
    if (!resp.ok || !data.ok) {
      throw new Error((data && data.error) || ('HTTP ' + resp.status));
    }
    return data;
  }

  function fmtTime(s) {
    if (!s) return 'never';
    const d = new Date(s);
    if (isNaN(d.getTime()) || d.getUTCFullYear() < 2) return 'never';
    return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  function cell(tr, text, cls) {
    const td = document.createElement('td');
    td.textContent = String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function button(label, cls, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.className = cls;
    b.addEventListener('click', onClick);
    return b;
  }

  function confirmThen(text, action) {
    pending = action;
    $('#confirm-text').textContent = text;
    $('#confirm').returnValue = ''; // Escape keeps the last value: never let it confirm
    $('#confirm').showModal();
  }

  function renderInstallations(list) {
    const tb = $('#installations tbody');
    tb.replaceChildren();
    for (const i of list) {
      const tr = document.createElement('tr');
      tr.dataset.orgId = i.org_id;
      cell(tr, i.org_id, 'mono');
      cell(tr, i.team_name || i.enterprise_name || i.team_id || '');
      cell(tr, fmtTime(i.installed_at));
      cell(tr, i.bot_token_expires_at ? fmtTime(i.bot_token_expires_at) : '—');
      cell(tr, i.revoked ? 'uninstalled ' + fmtTime(i.revoked_at) : 'active');
      cell(tr, i.agents, 'num');
      const td = cell(tr, '');
      if (!i.revoked) td.appendChild(button('New registration token…', 'mint', () => openMint(i)));
      tb.appendChild(tr);
    }
  }

  function workspaceName(i) {
    const name = i.team_name || i.enterprise_name || '';
    return name ? name + ' (' + i.org_id + ')' : i.org_id;
  }

  function mintMode() {
    return $('#mint-replace').checked ? 'replace' : 'add';
  }

  function showMintWarning() {
    const w = $('#mint-warning');
    const i = minting;
    w.hidden = !i || mintMode() !== 'replace';
    if (i) {
      w.textContent = 'Replace: as soon as an agent registers with this token, the ' + i.agents +
        ' current agent(s) of ' + workspaceName(i) + ' stop at once: their access tokens and inboxes are deleted.';
    }
  }

  function openMint(i) {
    minting = i;
    $('#mint-text').textContent = 'Mint a one-time registration token for the workspace ' + workspaceName(i) + '?';
    $('#mint-add').checked = true;
    showMintWarning();
    $('#mint').returnValue = '';
    $('#mint').showModal();
  }

  // showMinted puts the token and its register command on the page (text
  // only, selectable); it is never logged or stored.
  function showMinted(r) {
    const t = r.registration_token;
    const what = t.mode === 'replace' ? 'REPLACES the current agents' : 'adds an agent';
    $('#minted-what').textContent = 'Registration token for ' + t.org_id + ' (' + what + '; one use, expires ' + fmtTime(t.expires_at) + ').';
    $('#minted-token').textContent = t.token;
    $('#minted-command').textContent = 'bridge register ' + (r.broker_url ? '--broker-url ' + r.broker_url + ' ' : '') +
      '--org-id ' + t.org_id + ' --registration-token ' + t.token;
    $('#minted').hidden = false;
  }

  function hideMinted() {
    $('#minted-token').textContent = '';
    $('#minted-command').textContent = '';
    $('#minted-what').textContent = '';
    $('#minted').hidden = true;
  }

  async function verifyAudit() {
    const out = $('#audit-verify-result');
    const b = $('#audit-verify');
    b.disabled = true;
    out.className = '';
    out.textContent = 'Verifying…';
    try {
      const r = await api('POST', 'audit/verify', {});
      if (r.intact) {
        out.textContent = 'intact: ' + r.chain_count + ' chains, ' + r.record_count + ' records';
        out.className = 'ok';
      } else {
        out.textContent = 'BROKEN: ' + r.problems.map((p) =>
          'chain ' + p.chain + ' at seq ' + p.seq + ': ' + p.reason + ' (' + p.detail + ')').join('; ') +
          ' — ' + r.chain_count + ' chains, ' + r.record_count + ' records';
        out.className = 'error';
      }
    } catch (e) {
      out.textContent = 'Verify failed: ' + e.message;
      out.className = 'error';
    } finally {
      b.disabled = false;
    }
  }

  function renderAgents(data) {
    const tb = $('#agents tbody');
    tb.replaceChildren();
    $('#idle-hint').textContent = 'An agent is idle after ' + Math.round(data.idle_after_seconds / 3600 * 10) / 10 +
      ' h without a pull. Revoking deletes its access token and inbox: its next pull is refused.';
    for (const a of data.agents) {
      const tr = document.createElement('tr');
      tr.dataset.agentId = a.id;
      if (a.idle) tr.classList.add('idle');
      cell(tr, a.id, 'mono agent-id');
      cell(tr, a.org_id, 'mono');
      cell(tr, fmtTime(a.registered_at));
      cell(tr, fmtTime(a.last_pull), 'last-pull');
      cell(tr, a.ready, 'num');
      cell(tr, a.leased, 'num');
      cell(tr, a.dead_letters, 'num dead-letters');
      cell(tr, fmtTime(a.token_expires_at) + (a.token_expired ? ' (expired)' : ''));
      cell(tr, (a.capabilities || []).join(', '));
      cell(tr, a.fanout_paused ? 'idle (fan-out paused)' : (a.idle ? 'idle' : ''), 'idle-flag');
      const td = cell(tr, '');
      td.appendChild(button('Revoke', 'danger revoke', () => confirmThen(
        'Revoke agent ' + a.id + ' of ' + a.org_id + '? Its access token and inbox (' +
        (a.ready + a.leased + a.dead_letters) + ' messages) are deleted; the bridge must register again.',
        async () => {
          const r = await api('POST', 'agents/' + encodeURIComponent(a.id) + '/revoke', { confirm: a.id });
          setStatus('Revoked ' + r.revoked.agent_id + ' (' + r.revoked.dropped + ' messages dropped).');
        })));
      if (a.dead_letters > 0) {
        td.appendChild(button('Redrive', 'redrive', () => confirmThen(
          'Move the ' + a.dead_letters + ' dead letters of ' + a.id + ' back to its inbox?',
          async () => {
            const r = await api('POST', 'agents/' + encodeURIComponent(a.id) + '/dead-letters/redrive', { confirm: a.id });
            setStatus('Redrove ' + r.redriven + ' dead letters of ' + a.id + '.');
          })));
      }
      tb.appendChild(tr);
    }
  }

  function renderAudit(data) {
    const tb = $('#audit tbody');
    tb.replaceChildren();
    if (!data.enabled) {
      $('#audit-hint').textContent = 'The audit log is not configured on this broker.';
      return;
    }
    $('#audit-hint').textContent = data.records.length + ' most recent records, newest last.';
    for (const r of data.records) {
      const tr = document.createElement('tr');
      cell(tr, r.seq, 'num');
      cell(tr, fmtTime(r.time));
      cell(tr, r.kind);
      cell(tr, r.org_id || '', 'mono');
      cell(tr, r.agent_id || '', 'mono');
      cell(tr, r.summary || '');
      tb.appendChild(tr);
    }
  }

  async function load() {
    try {
      const [inst, agents, audit] = await Promise.all([
        api('GET', 'installations'), api('GET', 'agents'), api('GET', 'audit')]);
      renderInstallations(inst.installations);
      renderAgents(agents);
      renderAudit(audit);
      $('#refresh').disabled = false;
      $('#audit-verify').disabled = false;
      document.body.dataset.loaded = String(Date.now());
      return true;
    } catch (e) {
      setStatus('Error: ' + e.message, true);
      return false;
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('#login').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      token = $('#token').value.trim();
      $('#token').value = '';
      if (await load()) setStatus('Connected.');
    });
    $('#refresh').addEventListener('click', load);
    $('#audit-verify').addEventListener('click', verifyAudit);
    $('#minted-hide').addEventListener('click', hideMinted);
    $('#mint-add').addEventListener('change', showMintWarning);
    $('#mint-replace').addEventListener('change', showMintWarning);
    $('#mint').addEventListener('close', async () => {
      const i = minting;
      minting = null;
      if ($('#mint').returnValue !== 'ok' || !i) return;
      const mode = mintMode();
      try {
        const r = await api('POST', 'orgs/' + encodeURIComponent(i.org_id) + '/registration-tokens', { mode, confirm: i.org_id });
        showMinted(r);
        setStatus('Minted a registration token for ' + workspaceName(i) + ' that ' +
          (mode === 'replace' ? 'replaces the current agents.' : 'adds an agent.'));
      } catch (e) {
        setStatus('Error: ' + e.message, true);
        return;
      }
      await load();
    });
    $('#confirm').addEventListener('close', async () => {
      const action = pending;
      pending = null;
      if ($('#confirm').returnValue !== 'ok' || !action) return;
      try {
        await action();
      } catch (e) {
        setStatus('Error: ' + e.message, true);
        return;
      }
      await load();
    });
  });
})();
