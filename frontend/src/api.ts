// Client for the Jarv1s backend: chat (SSE over a POST body), TTS and status.

export type Role = "user" | "assistant";

export interface ChatMessage {
  role: Role;
  content: string;
}

export interface Status {
  llm: { base_url: string; model: string; reachable: boolean };
  tts: { engine: "piper" | "espeak-ng"; voice: string | null; models: string[] };
}

export interface SseEvent {
  /** "message" when the block had no `event:` field, as in the SSE spec. */
  event: string;
  /** All `data:` lines of the block, joined with "\n". */
  data: string;
}

/** An error whose message is fit to show the user as is. */
export class ApiError extends Error {
  readonly status?: number;

  constructor(message: string, status?: number) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/**
 * Parses as many complete SSE events as `buffer` holds.
 * Returns them plus the unparsed remainder, to be prepended to the next chunk,
 * because a network chunk may end anywhere, even inside a line.
 */
export function parseSse(buffer: string): { events: SseEvent[]; rest: string } {
  // Hold back a trailing "\r": it may be the first half of a "\r\n" split across chunks.
  const cut = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
  const text = buffer.slice(0, cut).replace(/\r\n?/g, "\n");
  const blocks = text.split("\n\n");
  const rest = blocks.pop()! + buffer.slice(cut);

  const events: SseEvent[] = [];
  for (const block of blocks) {
    let event = "message";
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue; // blank or comment (keep-alive)
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    // Per the spec, a block without data dispatches nothing.
    if (data.length > 0) events.push({ event, data: data.join("\n") });
  }
  return { events, rest };
}

/** Turns a non-2xx response into an ApiError, preferring the backend's {"error": "..."} text. */
async function errorFrom(response: Response): Promise<ApiError> {
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body: unknown = await response.json();
    if (body && typeof body === "object" && "error" in body && typeof body.error === "string") {
      message = body.error;
    }
  } catch {
    // Not JSON (e.g. a proxy error page): the status line has to do.
  }
  return new ApiError(message, response.status);
}

function parseJson(data: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(data);
    return value && typeof value === "object" ? (value as Record<string, unknown>) : {};
  } catch {
    throw new ApiError(`Malformed event from the server: ${data}`);
  }
}

/**
 * Sends the whole conversation and calls `onDelta` with each piece of the reply.
 * Resolves on `event: done`; rejects with an ApiError on an HTTP error, an
 * `event: error`, or a stream that ends without `done`.
 */
export async function streamChat(
  messages: ChatMessage[],
  onDelta: (text: string) => void,
  signal?: AbortSignal,
): Promise<void> {
  const response = await fetch("/api/chat", {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify({ messages }),
    signal,
  });
  if (!response.ok) throw await errorFrom(response);
  if (!response.body) throw new ApiError("The server sent no reply body.");

  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      // At the end, a final blank line flushes an event the server did not terminate.
      const parsed = parseSse(done ? buffer + "\n\n" : buffer + value);
      buffer = parsed.rest;

      for (const { event, data } of parsed.events) {
        if (event === "done") return;
        const payload = parseJson(data);
        if (event === "error") {
          throw new ApiError(typeof payload.error === "string" ? payload.error : "Unknown error");
        }
        if (event === "message" && typeof payload.content === "string") onDelta(payload.content);
      }

      if (done) throw new ApiError("The reply stream ended unexpectedly.");
    }
  } finally {
    // Frees the connection if we stopped early; harmless once the stream is closed.
    reader.cancel().catch(() => {});
  }
}

/** Synthesises `text`; returns the WAV audio and the engine that made it. */
export async function speak(text: string): Promise<{ audio: Blob; engine: string | null }> {
  const response = await fetch("/api/tts", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ text }),
  });
  if (!response.ok) throw await errorFrom(response);
  return { audio: await response.blob(), engine: response.headers.get("X-TTS-Engine") };
}

export async function getStatus(): Promise<Status> {
  const response = await fetch("/api/status", { headers: { Accept: "application/json" } });
  if (!response.ok) throw await errorFrom(response);
  return (await response.json()) as Status;
}
