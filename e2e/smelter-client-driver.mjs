// A composition's backend as users write one: the real @swmansion/smelter-node client under plain Node, pointed at
// the gateway. Args: <gateway_url> <token>. Prints one JSON line per step; exits 1 with the error on failure.
// Jest cannot load this client (it requires an ESM-only dependency), hence a process of its own.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// smelter-node 0.4's ESM build cannot load under plain Node (FACTS.md): its CommonJS build.
const { default: Smelter, ExistingInstanceManager } = require('@swmansion/smelter-node');
const { View, Text, InputStream } = require('@swmansion/smelter');
const React = require('react');

const [url, token] = process.argv.slice(2);
const say = (step, value = {}) => console.log(JSON.stringify({ step, ...value }));

async function main() {
  const manager = new ExistingInstanceManager({ url, authorizationHeader: `Bearer ${token}` });
  const smelter = new Smelter(manager);
  let sawPlaying;
  const playing = new Promise((resolve) => (sawPlaying = resolve));
  // Smelter's events, through the client's own WebSocket (opened by init() through the gateway).
  manager.registerEventListener((event) => {
    say('event', { event });
    if (event.type === 'VIDEO_INPUT_PLAYING') sawPlaying();
  });
  await smelter.init();
  say('init');
  const input = await smelter.registerInput('cam', {
    type: 'rtp_stream',
    port: 9700,
    video: { decoder: 'ffmpeg_h264' },
  });
  // The result holds the client (and its Authorization header): print only Smelter's answer.
  say('registerInput', { result: input.registerResponse });
  const output = await smelter.registerOutput(
    'program',
    React.createElement(
      View,
      { style: { backgroundColor: '#000000' } },
      React.createElement(InputStream, { inputId: 'cam' }),
      React.createElement(Text, { style: { fontSize: 40 } }, 'live through the gateway'),
    ),
    {
      type: 'rtp_stream',
      port: 9701,
      transportProtocol: 'tcp_server',
      video: { encoder: { type: 'ffmpeg_h264', preset: 'ultrafast' }, resolution: { width: 1280, height: 720 } },
    },
  );
  say('registerOutput', { result: output });
  await smelter.start();
  say('start');
  await playing;
  await smelter.terminate();
  say('terminate');
}

main().then(
  () => process.exit(0),
  (err) => {
    say('error', { message: String(err?.message ?? err), body: err?.body ?? null });
    process.exit(1);
  },
);
