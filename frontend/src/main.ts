import "./style.css";
import { ApiError, getStatus, speak, streamChat, type ChatMessage, type Role } from "./api";

function $<T extends HTMLElement>(selector: string): T {
  const el = document.querySelector<T>(selector);
  if (!el) throw new Error(`Missing element ${selector}`);
  return el;
}

const statusLine = $<HTMLParagraphElement>("#status");
const list = $<HTMLOListElement>("#messages");
const form = $<HTMLFormElement>("#composer");
const input = $<HTMLTextAreaElement>("#input");
const sendButton = $<HTMLButtonElement>("#send");

/** What the backend sees: only completed turns, so a failed request never leaves a dangling one. */
const history: ChatMessage[] = [];

function errorText(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  // fetch() rejects with a TypeError when the server cannot be reached at all.
  if (err instanceof TypeError) return `Cannot reach the backend (${err.message}).`;
  return err instanceof Error ? err.message : String(err);
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, className?: string, text?: string) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function addMessage(role: Role, text: string) {
  const item = el("li", `message ${role}`);
  const who = el("span", "visually-hidden", role === "user" ? "You said:" : "Jarv1s said:");
  const body = el("p", "content", text);
  item.append(who, body);
  list.append(item);
  scrollToEnd();
  return { item, body };
}

function scrollToEnd() {
  list.scrollTop = list.scrollHeight;
}

/** Plays a WAV blob; resolves when playback ends. */
async function playBlob(blob: Blob, onStart: () => void): Promise<void> {
  const url = URL.createObjectURL(blob);
  try {
    const player = new Audio(url);
    const ended = new Promise<void>((resolve, reject) => {
      player.addEventListener("ended", () => resolve(), { once: true });
      player.addEventListener("error", () => reject(new Error("The browser could not play the audio.")), {
        once: true,
      });
    });
    ended.catch(() => {}); // if play() fails we report that error instead
    await player.play();
    onStart();
    await ended;
  } finally {
    URL.revokeObjectURL(url);
  }
}

function addSpeakButton(item: HTMLLIElement, text: string) {
  const actions = el("div", "actions");
  const button = el("button", "speak", "Speak");
  button.type = "button";
  button.setAttribute("aria-label", "Speak this reply");
  const note = el("small", "note");
  actions.append(button, note);
  item.append(actions);

  button.addEventListener("click", async () => {
    button.disabled = true;
    note.textContent = "";
    note.classList.remove("error");
    try {
      const { audio, engine } = await speak(text);
      await playBlob(audio, () => (note.textContent = engine ?? ""));
    } catch (err) {
      note.textContent = errorText(err);
      note.classList.add("error");
    } finally {
      button.disabled = false;
    }
  });
}

function setBusy(busy: boolean) {
  sendButton.disabled = busy;
  // Lets screen readers announce the finished reply once instead of every streamed fragment.
  list.setAttribute("aria-busy", String(busy));
}

async function send(text: string) {
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const reply = addMessage("assistant", "");
  reply.item.classList.add("pending");
  setBusy(true);

  let content = "";
  try {
    await streamChat(history, (delta) => {
      content += delta;
      reply.body.textContent = content;
      scrollToEnd();
    });
    history.push({ role: "assistant", content });
    if (content.trim()) addSpeakButton(reply.item, content);
    else reply.body.textContent = "(empty reply)";
  } catch (err) {
    history.pop();
    reply.item.append(el("p", "error", errorText(err)));
    if (!input.value) input.value = text; // so the user can simply retry
  } finally {
    reply.item.classList.remove("pending");
    setBusy(false);
    scrollToEnd();
    input.focus();
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || sendButton.disabled) return;
  input.value = "";
  void send(text);
});

input.addEventListener("keydown", (event) => {
  // isComposing: Enter also confirms IME input and must not send then.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

async function loadStatus() {
  try {
    const { llm, tts } = await getStatus();
    const reachable = el(
      "span",
      llm?.reachable ? "ok" : "bad",
      llm?.reachable ? "reachable" : "unreachable",
    );
    const voice = tts?.voice ? ` (${tts.voice})` : "";
    statusLine.replaceChildren(
      `LLM ${llm?.model ?? "?"} at ${llm?.base_url ?? "?"}: `,
      reachable,
      ` · TTS: ${tts?.engine ?? "?"}${voice}`,
    );
  } catch (err) {
    statusLine.replaceChildren(el("span", "bad", `Status unavailable: ${errorText(err)}`));
  }
}

void loadStatus();
input.focus();
