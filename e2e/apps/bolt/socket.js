// A Bolt for JavaScript app that answers Slack synchronously, run by the
// end-to-end suite (e2e/socketmode_apps_test.go) through the real broker and
// bridge binaries. By default it is a Socket Mode app configured exactly as
// docs/clients.md tells a user to configure theirs, and nothing else:
//
//   socketMode                = true
//   appToken                  = any app-level token (xapp-...)
//   token                     = any token (the real bot token stays on the broker)
//   clientOptions.slackApiUrl = the bridge's local API, http://127.0.0.1:7890/api/
//
// Bolt hands clientOptions to its SocketModeReceiver (App copies them into
// installerOptions.clientOptions, which the receiver gives the
// @slack/socket-mode client), so apps.connections.open goes to the bridge
// too, and the bridge answers it with its own ws:// URL.
//
// With RECEIVER=http it runs the same handlers on Bolt's HTTP receiver
// (forward mode: SIGNING_SECRET = the bridge's forward signing secret, PORT).
//
// The handlers answer in ack(): a slash command with a text (which the
// bridge sends to the broker as {"text": ...}), a view_submission with
// response_action "errors", a block_suggestion with options; the broker
// writes that answer as the HTTP response Slack's request receives.
//
// Settings come from the environment: SLACK_API_URL (required),
// SLACK_APP_TOKEN (default xapp-not-a-real-token), SLACK_BOT_TOKEN (default
// xoxb-not-a-real-token), RECEIVER (socket | http), and for http
// SIGNING_SECRET and PORT. The app reports what it sees as one JSON object
// per line on stdout; Bolt's own log goes to stderr.
'use strict';

const { App, LogLevel } = require('@slack/bolt');

const receiver = process.env.RECEIVER || 'socket';
const token = process.env.SLACK_BOT_TOKEN || 'xoxb-not-a-real-token';
const appToken = process.env.SLACK_APP_TOKEN || 'xapp-not-a-real-token';
const slackApiUrl = process.env.SLACK_API_URL;
const signingSecret = process.env.SIGNING_SECRET;
const port = Number(process.env.PORT);
if (!slackApiUrl || (receiver === 'http' && (!signingSecret || !port)) || !['socket', 'http'].includes(receiver)) {
  process.stderr.write('socket.js: SLACK_API_URL is required; RECEIVER=http also needs SIGNING_SECRET and PORT\n');
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

const clientOptions = { slackApiUrl, retryConfig: { retries: 0 } };
const app = receiver === 'socket'
  ? new App({ token, appToken, socketMode: true, logger, clientOptions })
  : new App({ token, signingSecret, port, logger, clientOptions });

// app_mention: report it and reply in the thread (a Web API call through
// the bridge's facade, as in apps/bolt/app.js).
app.event('app_mention', async ({ event, say }) => {
  report({ kind: 'received', type: 'app_mention', channel: event.channel, ts: event.ts, text: event.text });
  try {
    const res = await say({ text: 'bolt: threaded reply', thread_ts: event.ts });
    report({ kind: 'call', method: 'chat.postMessage', ok: res.ok === true, result: { ts: res.ts, channel: res.channel } });
  } catch (err) {
    report({ kind: 'call', method: 'chat.postMessage', ok: false, error: String((err.data && err.data.error) || err.code) });
  }
});

// A slash command answered in ack() with a text: Slack shows it to the user.
app.command('/relay', async ({ command, ack }) => {
  await ack(`bolt: ack for ${command.text}`);
  report({ kind: 'received', type: 'slash_command', command: command.command, text: command.text });
});

// A click answered at once with an empty ack (the broker does not hold
// block_actions).
app.action('approve', async ({ body, ack }) => {
  await ack();
  report({ kind: 'received', type: 'block_actions', action_id: body.actions[0].action_id });
});

// A modal submission refused with a field error.
app.view('relay_modal', async ({ view, ack }) => {
  const note = view.state.values.note.note_input.value;
  await ack({ response_action: 'errors', errors: { note: `bolt: "${note}" is not allowed` } });
  report({ kind: 'received', type: 'view_submission', callback_id: view.callback_id, note });
});

// An external select's options, answered in ack().
app.options('pick', async ({ options, ack }) => {
  await ack({ options: [{ text: { type: 'plain_text', text: `bolt: ${options.value}` }, value: 'v1' }] });
  report({ kind: 'received', type: 'block_suggestion', value: options.value });
});

app.error(async (err) => {
  report({ kind: 'error', message: String(err && err.message) });
});

(async () => {
  try {
    // Socket Mode: resolves once the bridge's WebSocket said hello.
    await app.start();
    const who = await app.client.auth.test();
    report({ kind: 'ready', receiver, slack_api_url: slackApiUrl, user_id: who.user_id, team_id: who.team_id });
  } catch (err) {
    report({ kind: 'fatal', message: String(err && err.message), code: String(err && err.code) });
    process.exit(1);
  }
})();

process.on('SIGTERM', () => {
  app.stop().finally(() => process.exit(0));
});
