// A Bolt for JavaScript app run by the end-to-end suite (e2e/apps_test.go)
// through the real broker and bridge binaries. It is configured exactly as
// docs/clients.md tells a user to configure theirs, and nothing else:
//
//   signingSecret            = the bridge's --forward-signing-secret
//   token                    = any token (the real bot token stays on the broker)
//   clientOptions.slackApiUrl = the bridge's local API, http://127.0.0.1:7890/api/
//
// Settings come from the environment: SIGNING_SECRET, SLACK_API_URL, PORT and
// SLACK_BOT_TOKEN (default xoxb-not-a-real-token). The app reports what it
// sees and what each Web API call answered as one JSON object per line on
// stdout; Bolt's own log goes to stderr.
'use strict';

const { App, LogLevel } = require('@slack/bolt');

const token = process.env.SLACK_BOT_TOKEN || 'xoxb-not-a-real-token';
const signingSecret = process.env.SIGNING_SECRET;
const slackApiUrl = process.env.SLACK_API_URL;
const port = Number(process.env.PORT);
if (!signingSecret || !slackApiUrl || !port) {
  process.stderr.write('app.js: SIGNING_SECRET, SLACK_API_URL and PORT are required\n');
  process.exit(2);
}

function report(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// Bolt's default logger writes info to stdout; keep stdout for reports.
const logger = {
  level: LogLevel.INFO,
  debug: () => {},
  info: (...m) => process.stderr.write('[info] ' + m.join(' ') + '\n'),
  warn: (...m) => process.stderr.write('[warn] ' + m.join(' ') + '\n'),
  error: (...m) => process.stderr.write('[error] ' + m.join(' ') + '\n'),
  setLevel(l) { this.level = l; },
  getLevel() { return this.level; },
  setName: () => {},
};

const app = new App({
  token,
  signingSecret,
  port,
  logger,
  clientOptions: { slackApiUrl, retryConfig: { retries: 0 } },
});

// call runs one Web API call and reports its outcome (never the token).
async function call(method, fn, pick) {
  try {
    const res = await fn();
    report({ kind: 'call', method, ok: res.ok === true, result: pick ? pick(res) : {} });
    return res;
  } catch (err) {
    const code = (err.data && err.data.error) || err.code || 'exception';
    report({ kind: 'call', method, ok: false, error: String(code), message: String(err.message) });
    return null;
  }
}

// app_mention: a threaded reply with say(), a reaction, the thread read back.
app.event('app_mention', async ({ event, say, client }) => {
  report({ kind: 'received', type: 'app_mention', channel: event.channel, ts: event.ts, text: event.text });
  await call('chat.postMessage', () => say({ text: 'bolt: threaded reply', thread_ts: event.ts }),
    (r) => ({ ts: r.ts, channel: r.channel }));
  await call('reactions.add', () => client.reactions.add({ channel: event.channel, timestamp: event.ts, name: 'eyes' }));
  await call('conversations.replies', () => client.conversations.replies({ channel: event.channel, ts: event.ts }),
    (r) => ({ messages: (r.messages || []).length }));
});

// message.im: a streamed answer, then a file upload in the thread.
app.event('message', async ({ event, client }) => {
  if (event.channel_type !== 'im' || event.subtype) {
    return;
  }
  report({ kind: 'received', type: 'message.im', channel: event.channel, ts: event.ts, text: event.text });
  const started = await call('chat.startStream',
    () => client.chat.startStream({ channel: event.channel, thread_ts: event.ts, markdown_text: 'Thinking' }),
    (r) => ({ ts: r.ts }));
  if (started && started.ts) {
    await call('chat.appendStream',
      () => client.chat.appendStream({ channel: event.channel, ts: started.ts, markdown_text: ' about it' }));
    await call('chat.stopStream',
      () => client.chat.stopStream({ channel: event.channel, ts: started.ts, markdown_text: '. Done.' }));
  }
  await call('files.uploadV2', () => client.files.uploadV2({
    channel_id: event.channel, thread_ts: event.ts, filename: 'bolt-report.txt',
    title: 'Bolt report', content: 'hello from bolt through sealrelay\n',
  }), (r) => ({ files: (r.files || []).flatMap((c) => (c.files || []).map((f) => f.id)) }));
});

// A slash command: ack, then a message with a button.
app.command('/relay', async ({ command, ack, say }) => {
  await ack();
  report({ kind: 'received', type: 'slash_command', command: command.command, text: command.text, trigger_id: command.trigger_id });
  await call('chat.postMessage', () => say({
    text: 'bolt: approve?',
    blocks: [{ type: 'actions', block_id: 'relay_actions', elements: [
      { type: 'button', action_id: 'approve', text: { type: 'plain_text', text: 'Approve' }, value: 'yes' }] }],
  }), (r) => ({ ts: r.ts, channel: r.channel }));
});

// A block_actions click: open a modal with the click's trigger_id.
app.action('approve', async ({ body, ack, client }) => {
  await ack();
  report({ kind: 'received', type: 'block_actions', action_id: body.actions[0].action_id, trigger_id: body.trigger_id });
  await call('views.open', () => client.views.open({
    trigger_id: body.trigger_id,
    view: {
      type: 'modal', callback_id: 'relay_modal', private_metadata: body.channel ? body.channel.id : '',
      title: { type: 'plain_text', text: 'Relay' }, submit: { type: 'plain_text', text: 'Send' },
      blocks: [{ type: 'input', block_id: 'note', label: { type: 'plain_text', text: 'Note' },
        element: { type: 'plain_text_input', action_id: 'note_input' } }],
    },
  }), (r) => ({ view_id: r.view && r.view.id }));
});

// A view_submission: ack, then post what was submitted.
app.view('relay_modal', async ({ view, ack, client }) => {
  await ack();
  const note = view.state.values.note.note_input.value;
  report({ kind: 'received', type: 'view_submission', callback_id: view.callback_id, note });
  await call('chat.postMessage', () => client.chat.postMessage({
    channel: view.private_metadata || 'C0APPS', text: `bolt: submitted ${note}`,
  }), (r) => ({ ts: r.ts, channel: r.channel }));
});

app.error(async (err) => {
  report({ kind: 'error', message: String(err && err.message) });
});

(async () => {
  try {
    await app.start();
    // Bolt already ran auth.test against the bridge when it was built; run
    // it again to report the identity the bridge answered with.
    const who = await app.client.auth.test();
    report({ kind: 'ready', port, slack_api_url: slackApiUrl, token, user_id: who.user_id, team_id: who.team_id, bot_id: who.bot_id });
  } catch (err) {
    report({ kind: 'fatal', message: String(err && err.message), code: String(err && err.code) });
    process.exit(1);
  }
})();

process.on('SIGTERM', () => {
  app.stop().finally(() => process.exit(0));
});
