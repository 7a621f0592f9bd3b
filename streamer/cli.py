"""The one `streamer` command. argparse lives only here; each subcommand calls a public function."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from streamer.config import DECODINGS
from streamer.errors import StreamerError

Handler = Callable[[argparse.Namespace], int]


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pair", default="en-es", help="shipped language pair (default: en-es)")
    p.add_argument("--model", default=None, help="a model folder instead of a shipped pair")
    p.add_argument("--backend", default=None, choices=["eager", "compile", "onnx", "tensorrt"],
                   help="how to run the step graph (default: onnx when installed, else eager)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for the backend")
    p.add_argument("--decoding", default="auto", choices=DECODINGS,
                   help="unit choice: the model's unit LM search (better, ~0.3 s later), greedy CTC, or auto "
                        "(the LM where the model has one and the backend runs it: eager, compile, onnx)")


def default_backend() -> str:
    """ONNX Runtime on CPU when installed (not TensorRT: its first build takes minutes), else eager."""
    from streamer.engine import available_backends

    return "onnx" if "onnx" in available_backends() else "eager"


def load_translator(args: argparse.Namespace):
    from streamer.engine import BackendConfig
    from streamer.pipeline import Translator

    backend = BackendConfig(name=args.backend or default_backend(), num_threads=args.threads)
    if args.model:
        return Translator.from_dir(args.model, backend=backend, decoding=args.decoding)
    return Translator.from_pretrained(args.pair, backend=backend, decoding=args.decoding)


def cmd_translate(args: argparse.Namespace) -> int:
    from streamer.audio.io import read_audio, write_audio

    translator = load_translator(args)
    samples, rate = read_audio(args.input, sample_rate=None)
    out = translator.translate_array(samples, sample_rate=rate)
    write_audio(args.output, out, sample_rate=translator.output_sample_rate)
    print(f"{args.input} -> {args.output}: {len(samples) / rate:.2f} s in, "
          f"{len(out) / translator.output_sample_rate:.2f} s out")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from streamer.audio.devices import describe_devices

    print(describe_devices())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from streamer.train.recipe import main as run_recipe

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    run_recipe(args.config, stages=args.stage)
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from streamer.train.corpus import main as build

    build(args.config)
    return 0


def cmd_units(args: argparse.Namespace) -> int:
    from streamer.assets import ASSETS
    from streamer.train.units_cli import print_units

    print_units(args.input, model_dir=args.units_dir or ASSETS / args.pair)
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from streamer.live import LiveConfig, run_live
    from streamer.vad import VadConfig

    config = LiveConfig(
        input=args.input, output=args.output, pair=args.pair, model=args.model,
        backend=args.backend or default_backend(), decoding=args.decoding,
        threads=args.threads, record_in=args.record_in, record_out=args.record_out, vad=not args.no_vad,
        vad_config=VadConfig(backend=args.vad), duration_s=args.duration, block_ms=args.block_ms,
        jitter_ms=args.jitter_ms, view=args.view,
    )
    print(run_live(config).summary())
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from streamer.mqtt.service import load_service_config, serve

    connection, config = load_service_config(args.config, broker=args.broker, overrides={
        "username": args.username, "password": args.password, "ca_file": args.tls_ca,
        "tls": True if args.tls_ca else None, "prefix": args.prefix, "group": args.group,
        "max_streams": args.max_streams, "worker_id": args.worker_id})
    asyncio.run(serve(load_translator(args), connection, config))
    return 0


def cmd_mqtt_send(args: argparse.Namespace) -> int:
    import asyncio

    from streamer.mqtt.connection import ConnectionConfig
    from streamer.mqtt.files import send_file

    report = asyncio.run(send_file(args.input, stream_id=args.stream, out_path=args.output,
                                   connection=ConnectionConfig.from_url(args.broker), realtime=not args.fast))
    print(report)
    return 0


def cmd_mqtt_listen(args: argparse.Namespace) -> int:
    import asyncio

    from streamer.mqtt.connection import ConnectionConfig
    from streamer.mqtt.files import record_stream

    report = asyncio.run(record_stream(args.stream, args.output, connection=ConnectionConfig.from_url(args.broker),
                                       timeout_s=args.timeout))
    print(report)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from streamer.bench import cmd_bench as run

    return run(args)


def cmd_export(args: argparse.Namespace) -> int:
    from streamer.assets import model_dir
    from streamer.engine import BackendConfig
    from streamer.engine.export import export_model

    config = BackendConfig(name=args.backend, num_threads=args.threads, fp16=args.fp16,
                           max_batch=args.max_batch, cache_dir=args.cache_dir)
    print(export_model(args.model if args.model else model_dir(args.pair), config))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from streamer.eval.run import main as run_eval

    run_eval(args.config, pair=args.pair, model=args.model, backend=args.backend, limit=args.limit,
             out_dir=args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer", description="Streaming speech-to-speech translation")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("translate", help="translate a speech file (any rate/format soundfile reads)")
    p.add_argument("input")
    p.add_argument("output")
    add_model_args(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("live", help="translate live: microphone (or a file in real time) to speaker (or a file)")
    p.add_argument("--input", default=None, help="input device index or name, or file.wav played as a microphone")
    p.add_argument("--output", default=None, help="output device index or name, or file.wav to write instead")
    add_model_args(p)
    p.add_argument("--record-in", default=None, help="also write the (16 kHz) input to this file")
    p.add_argument("--record-out", default=None, help="also write the translated output to this file")
    p.add_argument("--no-vad", action="store_true", help="translate everything, noise and silence included")
    p.add_argument("--vad", default="auto", choices=["auto", "silero", "energy"], help="voice detector")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds of input")
    p.add_argument("--block-ms", type=int, default=20, help="audio device block (default: 20)")
    p.add_argument("--jitter-ms", type=int, default=60, help="speaker slack for compute jitter (default: 60)")
    p.add_argument("--view", default="auto", choices=["auto", "on", "off"],
                   help="status view (auto: when stdout is a terminal)")
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("devices", help="list audio input and output devices")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("serve", help="serve many streams over MQTT (one worker; start more to scale out)")
    p.add_argument("--config", default=None, help="service YAML, e.g. configs/serve.yaml")
    p.add_argument("--broker", default=None, help="mqtt://[user:pass@]host:port or mqtts://...")
    p.add_argument("--username", default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--tls-ca", default=None, help="CA file to verify the broker (turns TLS on)")
    p.add_argument("--prefix", default=None, help="topic prefix (default streamer/v1)")
    p.add_argument("--group", default=None, help="$share group of the workers")
    p.add_argument("--max-streams", type=int, default=None, help="claims beyond this are answered busy")
    p.add_argument("--worker-id", default=None)
    add_model_args(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("mqtt-send", help="send a speech file to the workers and save the translation")
    p.add_argument("input")
    p.add_argument("--stream", required=True, help="stream id ([A-Za-z0-9_.-], at most 64 chars)")
    p.add_argument("--output", default=None, help="write the translated audio here")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    p.add_argument("--fast", action="store_true", help="send as fast as possible instead of in real time")
    p.set_defaults(func=cmd_mqtt_send)

    p = sub.add_parser("mqtt-listen", help="record a stream's translated output to a wav file")
    p.add_argument("--stream", required=True)
    p.add_argument("output")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    p.add_argument("--timeout", type=float, default=30.0, help="stop after this many seconds without audio")
    p.set_defaults(func=cmd_mqtt_listen)

    from streamer.bench import add_bench_args  # numpy only: keeps `streamer --help` fast

    p = sub.add_parser("bench", help="latency benchmark: SimulEval latency, compute, streams, re-encode baseline")
    add_bench_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("eval", help="judge translations of the held-out sets (offline Whisper, toplines beside)")
    p.add_argument("--config", default=None, help="eval YAML, e.g. configs/eval/en-es.yaml")
    p.add_argument("--pair", default=None, help="shipped pair to evaluate (default: the config's)")
    p.add_argument("--model", default=None, help="a model folder instead of a shipped pair")
    p.add_argument("--backend", default=None, choices=["eager", "compile", "onnx", "tensorrt"])
    p.add_argument("--limit", type=int, default=None, help="utterances per sentence set")
    p.add_argument("--out", default=None, help="write report.md/json/png here")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="export or compile the step graph for a backend into the artifact cache")
    p.add_argument("--backend", required=True, choices=["onnx", "tensorrt", "compile"])
    p.add_argument("--pair", default="en-es", help="shipped language pair (default: en-es)")
    p.add_argument("--model", default=None, help="a model folder instead of a shipped pair")
    p.add_argument("--fp16", action="store_true", help="tensorrt: build an fp16 engine")
    p.add_argument("--max-batch", type=int, default=64, help="largest batch the artifact serves (tensorrt, compile)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (compile warm-up)")
    p.add_argument("--cache-dir", default=None, help="artifact cache (default $STREAMER_CACHE or ~/.cache/streamer)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("train", help="run the training recipe (stages: ssl,units,s2ut,vocoder,package)")
    p.add_argument("--config", required=True, help="recipe YAML, e.g. configs/train/en-es.yaml")
    p.add_argument("--stage", default="all", help="'all' or a comma-separated list of stages; 'unpack' turns "
                   "the packaged model in output_dir back into checkpoints to go on from")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("corpus", help="synthesise the bilingual training corpus")
    p.add_argument("config", help="corpus YAML, e.g. configs/corpus/default.yaml")
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("units", help="print a speech file's units (k-means models) or its translation's phonemes")
    p.add_argument("input")
    p.add_argument("--pair", default="en-es", help="shipped pair whose target-language units to use")
    p.add_argument("--units-dir", default=None,
                   help="model folder (phonemes.json, or units.safetensors + ssl_encoder.safetensors)")
    p.set_defaults(func=cmd_units)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except StreamerError as exc:
        print(f"streamer: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
