// One call of the AI SDK's default OpenAI model (the Responses API) against the wrapper:
//   node ai_sdk.mjs generate|stream   with WRAPPER_BASE_URL, WRAPPER_API_KEY, MODEL set.
// Prints one JSON line: the text, the stream's text parts, the finish reason and the usage.
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, streamText } from 'ai';

const openai = createOpenAI({ baseURL: process.env.WRAPPER_BASE_URL, apiKey: process.env.WRAPPER_API_KEY });
const model = openai(process.env.MODEL);
const prompt = 'Say hello';
const mode = process.argv[2];

if (mode === 'generate') {
  const result = await generateText({ model, prompt, maxRetries: 0 });
  console.log(JSON.stringify({ text: result.text, finishReason: result.finishReason, usage: result.usage }));
} else if (mode === 'stream') {
  const result = streamText({ model, prompt, maxRetries: 0, onError: ({ error }) => { throw error; } });
  const parts = [];
  for await (const part of result.textStream) parts.push(part);
  console.log(JSON.stringify({
    text: await result.text, parts, finishReason: await result.finishReason, usage: await result.usage,
  }));
} else {
  console.error(`usage: node ai_sdk.mjs generate|stream (got ${mode})`);
  process.exit(2);
}
