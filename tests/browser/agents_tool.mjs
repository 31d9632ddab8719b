// A RealtimeAgent from @openai/agents with one tool, over the WebSocket, against livehost (tests/test_agents_sdk.py).
import { RealtimeAgent, RealtimeSession, tool } from '@openai/agents/realtime';
import { z } from 'zod';

const url = process.argv[2];
const calls = [];
const orderStatus = tool({
  name: 'order_status', description: 'Look up an order by its number.',
  parameters: z.object({ order_id: z.string() }),
  execute: async ({ order_id }) => { calls.push(order_id); return JSON.stringify({ order: order_id, status: 'shipped', arrives: 'Friday' }); },
});
const agent = new RealtimeAgent({ name: 'Mika', instructions: 'You help customers of a shop.', tools: [orderStatus] });
const session = new RealtimeSession(agent, { transport: 'websocket', model: 'livehost',
  config: { outputModalities: ['text'], toolChoice: 'required' } });
const seen = [];
session.on('transport_event', (e) => seen.push(e.type));
session.on('error', (e) => { console.log(JSON.stringify({ error: String(e.error?.message || e.error || e) })); });
await session.connect({ apiKey: 'local', url });
const done = new Promise((resolve) => {
  session.on('agent_tool_end', () => {
    session.transport.updateSessionConfig({ toolChoice: 'auto' });
  });
  session.transport.on('*', (e) => {
    if (e.type === 'response.done' && e.response?.output?.some((o) => o.type === 'message')) resolve(e.response);
  });
});
session.sendMessage('Where is my order 5521?');
const timer = setTimeout(() => { console.log(JSON.stringify({ timeout: true, calls, seen })); process.exit(2); }, 120000);
const response = await done;
clearTimeout(timer);
const text = response.output.filter((o) => o.type === 'message').flatMap((o) => o.content).map((c) => c.text || c.transcript || '').join(' ');
console.log(JSON.stringify({ calls, text, seen: [...new Set(seen)] }));
session.close();
process.exit(0);
