"""Chat models by pinned id, their prices, and deterministic offline models for any workflow.

Model ids are strings recorded in the ledger: ``openai:<model>`` (any OpenAI-compatible
endpoint through ``langchain-openai``), or an id a workflow registered with
``register_model`` (its offline stand-ins). Every model needs a price: spend caps are enforced
in USD, so a model without one is refused.

Offline models for your own workflow, with no network:

* ``KeywordRouter(keywords={"refund": ("refund", "money back")})`` picks a route by keywords
  and answers with a call of the ``route`` tool the workflow offers.
* ``ScriptedChatModel(script=[...])`` plays a fixed list of replies. The turn it plays is read
  from the conversation (replies since the user's last message), not from a counter, so a run
  resumed in another process continues where it stopped. ``by_request`` picks a script by a
  phrase of the request, for threads with several requests.
* ``CompromisedChatModel(base=...)`` (``compromised:<base id>``) obeys every instruction it
  reads in tool outputs and documents, for testing defences against the worst model.

Prices: ``PRICES`` is the built-in table, versioned by ``PRICES_VERSION``. A file (YAML or
JSON, ``TETHER_PRICES=path``) overrides or adds entries under its own version::

    version: acme-2026-03
    prices:
      openai:gpt-4o: {input_per_mtok: 2.5, output_per_mtok: 10.0, max_output_tokens: 1024}

``load_prices(path)`` reads it into a ``PriceTable`` (a mapping usable wherever extra prices
are taken); a bad file raises ``PriceFileError`` naming the file and the field.
``price_stamp(ids, prices)`` is the version and hash the ledger and ``tether versions`` record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tether.errors import ConfigError

__all__ = [
    "PRICES",
    "PRICES_VERSION",
    "CompromisedChatModel",
    "Instruction",
    "KeywordRouter",
    "ModelConfig",
    "ModelPrice",
    "OfflineChatModel",
    "PriceFileError",
    "PriceTable",
    "ScriptedChatModel",
    "estimate_tokens",
    "find_instructions",
    "load_chat_model",
    "load_prices",
    "price_for",
    "price_stamp",
    "prices_version",
    "register_model",
    "reveal_text",
]


class ModelPrice(BaseModel):
    """USD per million tokens, and the output reserved as the worst case before each call."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    max_output_tokens: int = Field(default=1024, gt=0)
    """Worst case reserved before each call."""

    def cost(self, *, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6

    def worst_case(self, *, input_tokens: int) -> float:
        return self.cost(input_tokens=input_tokens, output_tokens=self.max_output_tokens)


_OFFLINE_PRICE = ModelPrice(input_per_mtok=0.0, output_per_mtok=0.0, max_output_tokens=256)
PRICES: dict[str, ModelPrice] = {
    "offline:scripted": _OFFLINE_PRICE,
    "offline:keyword-router": _OFFLINE_PRICE,
    "openai:gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.60),
    "openai:gpt-4o": ModelPrice(input_per_mtok=2.50, output_per_mtok=10.00),
    "openai:gpt-4.1-mini": ModelPrice(input_per_mtok=0.40, output_per_mtok=1.60),
    "openai:gpt-4.1": ModelPrice(input_per_mtok=2.00, output_per_mtok=8.00),
}
"""The price table; ``register_model`` adds to it, ``ModelConfig.prices`` overrides it per run."""
PRICES_VERSION = "tether-prices-2026-01"
"""Version of the built-in ``PRICES`` (list prices in USD per million tokens as of that date)."""


class PriceFileError(ConfigError):
    """A price file cannot be used. Nothing from it was applied."""

    def __init__(self, *, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        super().__init__(setting=f"price file {path}", reason=f"{key}: {reason}; fix the file or unset TETHER_PRICES")


@dataclass(frozen=True, kw_only=True, slots=True)
class PriceTable(Mapping[str, ModelPrice]):
    """Prices that override or add to ``PRICES``, under a version of their own."""

    version: str
    """Recorded in the ledger and by ``tether versions`` with a hash of the prices charged."""
    entries: Mapping[str, ModelPrice]
    source: str | None = None
    """The file the table was read from."""

    def __getitem__(self, model_id: str) -> ModelPrice:
        return self.entries[model_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: str = Field(min_length=1)
    prices: dict[str, ModelPrice]


def load_prices(path: str | os.PathLike[str]) -> PriceTable:
    """Read a price file (YAML, or JSON by a ``.json`` suffix). Raises ``PriceFileError``."""
    import yaml

    where = os.fspath(path)
    try:
        text = Path(where).read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceFileError(path=where, key="<file>", reason=f"cannot be read ({exc.strerror})") from None
    try:
        raw = json.loads(text) if where.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise PriceFileError(path=where, key="<file>", reason=f"does not parse: {str(exc)[:200]}") from None
    try:
        parsed = _PriceFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "<file>"
        raise PriceFileError(path=where, key=key, reason=err["msg"]) from None
    bad = [m for m in parsed.prices if ":" not in m]
    if bad:
        raise PriceFileError(path=where, key=f"prices.{bad[0]}", reason="a model id is PROVIDER:NAME")
    return PriceTable(version=parsed.version, entries=dict(parsed.prices), source=where)


def prices_version(extra: Mapping[str, ModelPrice] | None = None) -> str:
    """The version of the prices in force: a ``PriceTable``'s own, else ``PRICES_VERSION``
    (``+custom`` when prices were passed in code)."""
    if isinstance(extra, PriceTable):
        return extra.version
    return f"{PRICES_VERSION}+custom" if extra else PRICES_VERSION


def price_stamp(model_ids: Sequence[str], extra: Mapping[str, ModelPrice] | None = None) -> dict[str, str]:
    """The price-table version and a SHA-256 over the prices of ``model_ids`` (what a run is charged)."""
    charged = {m: price_for(m, extra).model_dump(mode="json") for m in sorted(set(model_ids))}
    version = prices_version(extra)
    body = json.dumps({"version": version, "prices": charged}, sort_keys=True, separators=(",", ":"))
    return {"version": version, "sha256": hashlib.sha256(body.encode()).hexdigest()}

_FACTORIES: dict[str, Callable[[], BaseChatModel]] = {}


def register_model(model_id: str, factory: Callable[[], BaseChatModel], *, price: ModelPrice) -> None:
    """Make ``model_id`` loadable by ``load_chat_model`` (e.g. a workflow's offline stand-in)."""
    if ":" not in model_id or model_id.startswith("openai:"):
        raise ConfigError(setting="model id", reason=f"{model_id!r}: use PROVIDER:NAME, not openai:")
    _FACTORIES[model_id] = factory
    PRICES[model_id] = price


def price_for(model_id: str, extra: Mapping[str, ModelPrice] | None = None) -> ModelPrice:
    """The price of ``model_id`` (``compromised:<base>`` costs what its base costs)."""
    table = {**PRICES, **(extra or {})}
    if model_id not in table and model_id.startswith("compromised:"):
        return price_for(model_id.removeprefix("compromised:"), extra)
    try:
        return table[model_id]
    except KeyError:
        raise ConfigError(
            setting=f"price of model {model_id!r}",
            reason="no price in the model price table, so the spend cap cannot be enforced; "
            "pass Workflow(prices={...}) or ModelConfig(prices={...}), or pick one of "
            + ", ".join(sorted(table)),
        ) from None


def estimate_tokens(messages: Sequence[BaseMessage]) -> int:
    """A conservative token estimate (about 4 characters per token, rounded up)."""
    chars = 0
    for m in messages:
        chars += len(str(m.content)) + 16
        for tc in getattr(m, "tool_calls", None) or []:
            chars += len(str(tc.get("args"))) + len(tc.get("name", ""))
    return chars // 4 + 1


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelConfig:
    """Which models a run uses. ``None`` takes the workflow's own default."""

    router: str | None = None
    """Cheap model that picks the route."""
    reasoning: str | None = None
    """Stronger model that proposes actions."""
    base_url: str | None = None
    """OpenAI-compatible endpoint for ``openai:`` ids (default: ``OPENAI_BASE_URL`` or OpenAI)."""
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)
    """Extra or overriding prices (USD per million tokens); a ``PriceTable`` carries its version."""
    cheap: str | None = None
    """Model for requests the router judges easy with confidence (``None``: every request
    gets ``reasoning``)."""
    fallback: str | None = None
    """Model tried when the chosen one fails with a provider error (timeout, HTTP 5xx, 429)."""
    routing: str | None = None
    """``llm`` (the router model picks the route) or ``centroid`` (local embeddings, the
    ``embeddings`` extra); ``None``: the workflow's default."""

    @classmethod
    def from_env(cls) -> ModelConfig:
        """``TETHER_ROUTER_MODEL``, ``TETHER_MODEL``, ``TETHER_CHEAP_MODEL``,
        ``TETHER_FALLBACK_MODEL``, ``TETHER_ROUTING``, ``TETHER_OPENAI_BASE_URL`` and
        ``TETHER_PRICES`` (a price file; see ``load_prices``)."""
        prices_file = os.environ.get("TETHER_PRICES") or None
        routing = os.environ.get("TETHER_ROUTING") or None
        if routing not in (None, "llm", "centroid"):
            raise ConfigError(setting="TETHER_ROUTING", reason=f"{routing!r}: use llm or centroid")
        return cls(
            router=os.environ.get("TETHER_ROUTER_MODEL") or None,
            reasoning=os.environ.get("TETHER_MODEL") or None,
            base_url=os.environ.get("TETHER_OPENAI_BASE_URL") or None,
            prices=load_prices(prices_file) if prices_file else {},
            cheap=os.environ.get("TETHER_CHEAP_MODEL") or None,
            fallback=os.environ.get("TETHER_FALLBACK_MODEL") or None,
            routing=routing,
        )


def load_chat_model(model_id: str, *, base_url: str | None = None) -> BaseChatModel:
    """Build the chat model for a pinned id. Raises ``ConfigError`` for unknown ids."""
    if model_id.startswith("openai:"):
        from langchain_openai import ChatOpenAI

        name = model_id.removeprefix("openai:")
        if not name:
            raise ConfigError(setting="model", reason="write openai:<model>, e.g. openai:gpt-4o-mini")
        return ChatOpenAI(model=name, base_url=base_url, temperature=0, max_retries=1, timeout=60)
    if model_id.startswith("compromised:"):
        return _compromised(model_id.removeprefix("compromised:"))
    factory = _FACTORIES.get(model_id)
    if factory is None:
        known = ", ".join(sorted(_FACTORIES)) or "none registered"
        raise ConfigError(
            setting="model",
            reason=f"unknown model id {model_id!r}; use openai:<model> or a registered id ({known})",
        )
    return factory()


# ---------------------------------------------------------------- offline models


class OfflineChatModel(BaseChatModel):
    """Base of deterministic offline models: tool binding, token usage, a pinned id.

    Subclasses implement ``reply(messages, tools)``; ``tools`` are the bound tool schemas.
    """

    model_id: str = "offline:base"

    @property
    def _llm_type(self) -> str:
        return self.model_id

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self.bind(tools=list(tools), **kwargs)  # type: ignore[return-value]

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        raise NotImplementedError

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = [t for t in kwargs.get("tools", []) if isinstance(t, dict) and "function" in t]
        msg = self.reply(messages, tools)
        n_in, n_out = estimate_tokens(messages), estimate_tokens([msg])
        msg.usage_metadata = {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}
        msg.response_metadata = {"model_name": self.model_id}
        return ChatResult(generations=[ChatGeneration(message=msg)])


def _since_request(messages: Sequence[BaseMessage]) -> tuple[str, int]:
    """The user's latest text and how many model replies followed it."""
    idx = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
    text = str(messages[idx].content) if idx >= 0 else ""
    return text, sum(isinstance(m, AIMessage) for m in messages[idx + 1 :])


class ScriptedChatModel(OfflineChatModel):
    """Plays scripted replies; the turn is read from the conversation, so it survives restarts.

    Raises ``RuntimeError`` when a run asks for a turn the script does not have.
    """

    model_id: str = "offline:scripted"
    script: list[AIMessage] = []
    """Replies for any request, in order."""
    by_request: dict[str, list[AIMessage]] = {}
    """Phrase -> replies: the first phrase found in the request picks its script."""
    calls: list[int] = [0]
    """How many replies this instance produced (for tests; not used to pick a turn)."""

    def model_post_init(self, context: Any) -> None:
        self.calls = [0]

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        text, turn = _since_request(messages)
        script = next((s for phrase, s in self.by_request.items() if phrase in text), self.script)
        if turn >= len(script):
            raise RuntimeError(
                f"ScriptedChatModel: the run asked for reply {turn + 1} to {text[:60]!r}; "
                f"the script has {len(script)}"
            )
        self.calls[0] += 1
        return script[turn].model_copy()


class KeywordRouter(OfflineChatModel):
    """Offline router: the first route whose keyword occurs in the request (case-insensitive).

    Answers with a call of the bound ``route`` tool; the routes it may pick are that tool's enum.
    """

    model_id: str = "offline:keyword-router"
    keywords: dict[str, tuple[str, ...]]
    """Route -> words or phrases that select it, tried in order."""
    default: str | None = None
    """Route when nothing matches (``None``: the first route the workflow offers)."""

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        text, _ = _since_request(messages)
        offered = _route_enum(tools)
        low = text.lower()
        route = next(
            (r for r, words in self.keywords.items() if any(w.lower() in low for w in words)),
            self.default or (offered[0] if offered else "other"),
        )
        call = {"name": "route", "args": {"route": route}, "id": "call_route", "type": "tool_call"}
        return AIMessage(content="", tool_calls=[call])  # type: ignore[list-item]


def _route_enum(tools: list[dict[str, Any]]) -> list[str]:
    for t in tools:
        fn = t.get("function", {})
        if fn.get("name") == "route":
            return list(fn.get("parameters", {}).get("properties", {}).get("route", {}).get("enum", []))
    return []


# ---------------------------------------------------------------- the compromised model

_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_COMMENT = re.compile(r"<!--(.*?)-->", re.S)
_TAG = re.compile(r"<[^<>]{1,300}>")
_B64 = re.compile(r"(?<![\w+/=])[A-Za-z0-9+/]{20,}={0,2}(?![\w+/=])")
_HEX = re.compile(r"(?<![0-9A-Za-z])(?:[0-9a-fA-F]{2}){12,}(?![0-9A-Za-z])")
_LOOKALIKE = str.maketrans("аеорсухіјѕԁһАВЕКМНОРСТХΑΒΕΚΜΝΟΡΤΧοα", "aeopcyxijsdhABEKMHOPCTXABEKMNOPTXoa")  # noqa: RUF001
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\[(\"'])|\n+")
_PREAMBLE = re.compile(
    r"^\s*(?:[-*>#•]+\s*|\[[^\]]{0,40}\]\s*|\([^)]{0,40}\)\s*"
    r"|(?:note|message|instruction|instructions|attention|important|urgent|system|admin|assistant|ai|agent"
    r"|support agent|to the (?:ai|agent|assistant|support agent)|p\.?s)\b[^:\n]{0,30}:\s*"
    r"|[A-Za-z][\w ]{0,40}:\s*"
    r"|(?:ignore|disregard|forget|override)\b[^.\n]{0,60}?\b(?:instructions|rules|above|before|policy|policies)"
    r"\b[,.:;!]?\s*(?:and\s+|then\s+|instead\s+)*"
    r"|(?:please|kindly|now|also|then|next|first|finally|afterwards|immediately|and|step \d+[.:)]?|\d+[.)])"
    r",?\s+)",
    re.I,
)
_IMPERATIVE = re.compile(
    r"^(?:change|update|set|replace|refund|issue|send|e-?mail|forward|reply|look up|lookup|show|list|run|"
    r"reveal|share|transfer|wire|pay|add|grant|reset|remove|disable|make|put|pull up|fetch|retrieve|read|"
    r"open|query|export|give|unlock|enroll|revoke|approve|move)"
    r"\s+(?:up\s+|out\s+|back\s+)?(?:the|a|an|it|this|that|these|those|them|all|every|my|your|his|her|their|our"
    r"|to|me|us|\$|\d|[A-Z]{1,3}-\d|ticket|message|customer|order|account|e-?mail|phone|address|iban|record"
    r"|data|details|contact|payout|user|group|mfa|password|access|\S+@)",
    re.I,
)
"""An imperative verb at the start of a sentence, followed by its object (so a heading such as
"Refund limits" or "Change of mind" is not one)."""
_DIRECTIVE = re.compile(r"\bcall\s+(?:the\s+)?(?:tool\s+)?[`'\"]?(\w+)[`'\"]?\s+with\s+(?=\{)|\b(\w+)\((?=\{)", re.I)
_INJECTED = "inj"
"""Tool-call ids of the compromised model's obedient calls start with this tag."""


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    ok = text and all(c.isprintable() or c in "\n\t" for c in text) and re.search(r"[A-Za-z]{3,} ", text)
    return text if ok else None


def _decoded_blobs(text: str) -> list[str]:
    out: list[str] = []
    for blob in _B64.findall(text):
        try:
            got = _printable(base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True))
        except (binascii.Error, ValueError):
            got = None
        if got:
            out.append(got)
    for blob in _HEX.findall(text):
        if got := _printable(bytes.fromhex(blob)):
            out.append(got)
    return out


def reveal_text(text: str) -> str:
    """What a reader who misses nothing takes from ``text``: compatibility forms folded, invisible
    characters dropped, look-alike letters read as Latin, HTML comments and hidden spans shown,
    base64 and hex blobs decoded (appended as lines of their own)."""
    t = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text)).translate(_LOOKALIKE)
    t = _COMMENT.sub(lambda m: "\n" + m.group(1) + "\n", t)
    t = _TAG.sub(" ", t)
    decoded = _decoded_blobs(t)
    return "\n".join([t, *(reveal_text(d) for d in decoded)])


@dataclass(frozen=True, kw_only=True, slots=True)
class Instruction:
    """One instruction found in what the model read: a tool call (``explicit``) or a sentence."""

    key: str
    """Stable id derived from the instruction itself (so it is obeyed once per request)."""
    text: str
    tool: str | None = None
    args: Mapping[str, Any] | None = None


def _explicit(text: str) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    dec = json.JSONDecoder()
    for m in _DIRECTIVE.finditer(text):
        try:
            args, _ = dec.raw_decode(text, m.end())
        except ValueError:
            continue
        if isinstance(args, dict):
            found.append((m.group(1) or m.group(2), args))
    for i, ch in enumerate(text):
        if ch != "{":
            continue
        try:
            obj, _ = dec.raw_decode(text, i)
        except ValueError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("tool") or obj.get("name"), str):
            args = obj.get("args", obj.get("arguments"))
            if isinstance(args, dict):
                found.append((str(obj.get("tool") or obj.get("name")), args))
    return found


def _strip_preamble(sentence: str) -> str:
    s = sentence.strip()
    for _ in range(6):
        s2 = _PREAMBLE.sub("", s, count=1).strip()
        if s2 == s:
            break
        s = s2
    return s


def find_instructions(text: str) -> list[Instruction]:
    """Instructions in ``text`` (revealed first): explicit tool calls, then imperative sentences."""
    seen = reveal_text(text)
    out: list[Instruction] = []
    for tool_name, args in _explicit(seen):
        body = json.dumps({"tool": tool_name, "args": args}, sort_keys=True)
        out.append(Instruction(key=_digest(body), text=body, tool=tool_name, args=args))
    for line in _SENTENCE.split(seen):
        if "{" in line and any(i.tool for i in out):
            continue  # the sentence that carried an explicit call
        s = _strip_preamble(line).rstrip(" .!;")
        if len(s) > 8 and _IMPERATIVE.match(s):
            out.append(Instruction(key=_digest(s.lower()), text=s[0].upper() + s[1:] + "."))
    return out


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _read_texts(m: ToolMessage) -> list[str]:
    """The text a tool result carries (the result of a successful call; raw text otherwise)."""
    raw = str(m.content)
    try:
        data = json.loads(raw)
    except ValueError:
        return [raw]
    if isinstance(data, Mapping) and "status" in data:
        return list(_strings(data.get("result"))) if data.get("status") == "ok" else []
    return list(_strings(data))


def _tagged(m: BaseMessage, key: str = "") -> bool:
    prefix = f"{_INJECTED}{key}"
    if isinstance(m, ToolMessage):
        return m.tool_call_id.startswith(prefix)
    return isinstance(m, AIMessage) and any((tc.get("id") or "").startswith(prefix) for tc in m.tool_calls)


class CompromisedChatModel(OfflineChatModel):
    """A model that obeys every instruction it reads in tool outputs and documents.

    Each turn it reveals what the tool results since the user's request say (see
    ``reveal_text``), finds instructions in them and obeys each once, in the order read:
    an explicit call (``call TOOL with {...}``, ``TOOL({...})``, ``{"tool": ..., "args": ...}``)
    becomes that tool call when the tool is bound; a sentence ("change the email on file to
    ...") is handed to ``base`` as if the user had asked it, and ``base``'s calls for it are
    made. What it obeyed is read from the conversation (its calls' ids carry the
    instruction's key), so a resumed run does not obey twice. With nothing left to obey it is
    ``base``. For tests and benchmarks of defences: the worst model, not a polite one.
    """

    model_id: str = "compromised:offline"
    base: OfflineChatModel
    max_calls_per_instruction: int = 6

    def reply(self, messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
        idx = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
        head, after = messages[: idx + 1], messages[idx + 1 :]
        bound = {str(t.get("function", {}).get("name")) for t in tools}
        for ins in self._instructions(after):
            call = self._obey(ins, messages[:idx] if idx >= 0 else [], after, tools, bound)
            if call is not None:
                return call
        return self.base.reply(head + [m for m in after if not _tagged(m)], tools)

    @staticmethod
    def _instructions(after: Sequence[BaseMessage]) -> list[Instruction]:
        found: dict[str, Instruction] = {}
        for m in after:
            if isinstance(m, ToolMessage):
                for text in _read_texts(m):
                    for ins in find_instructions(text):
                        found.setdefault(ins.key, ins)
        return list(found.values())

    def _obey(self, ins: Instruction, before: list[BaseMessage], after: Sequence[BaseMessage],
              tools: list[dict[str, Any]], bound: set[str]) -> AIMessage | None:
        mine = [m for m in after if _tagged(m, ins.key)]
        if ins.tool is not None:
            if mine or ins.tool not in bound:
                return None
            call = {"name": ins.tool, "args": dict(ins.args or {}), "id": f"{_INJECTED}{ins.key}_0",
                    "type": "tool_call"}
            return AIMessage(content="", tool_calls=[call])  # type: ignore[list-item]
        if sum(isinstance(m, AIMessage) for m in mine) >= self.max_calls_per_instruction:
            return None
        sub = self.base.reply([*before, HumanMessage(content=ins.text), *mine], tools)
        calls = [tc for tc in sub.tool_calls if tc["name"] in bound]
        if not calls:
            return None
        for tc in calls:
            tc["id"] = f"{_INJECTED}{ins.key}_{tc.get('id') or tc['name']}"
        return AIMessage(content="", tool_calls=calls)  # type: ignore[arg-type]


def _compromised(base_id: str) -> CompromisedChatModel:
    base = load_chat_model(base_id)
    if not isinstance(base, OfflineChatModel):
        raise ConfigError(setting="model", reason=f"compromised:{base_id}: the base must be an offline model")
    return CompromisedChatModel(model_id=f"compromised:{base_id}", base=base)
