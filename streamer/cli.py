"""The one `streamer` command. argparse lives only here; each subcommand calls a public function."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from streamer.errors import StreamerError

Handler = Callable[[argparse.Namespace], int]


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pair", default="en-es", help="shipped language pair (default: en-es)")
    p.add_argument("--model", default=None, help="a model folder instead of a shipped pair")
    p.add_argument("--backend", default="eager", choices=["eager", "compile", "onnx", "tensorrt"],
                   help="how to run the step graph (default: eager)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for the backend")


def load_translator(args: argparse.Namespace):
    from streamer.engine import BackendConfig
    from streamer.pipeline import Translator

    backend = BackendConfig(name=args.backend, num_threads=args.threads)
    if args.model:
        return Translator.from_dir(args.model, backend=backend)
    return Translator.from_pretrained(args.pair, backend=backend)


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamer", description="Streaming speech-to-speech translation")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("translate", help="translate a speech file (any rate/format soundfile reads)")
    p.add_argument("input")
    p.add_argument("output")
    add_model_args(p)
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("devices", help="list audio input and output devices")
    p.set_defaults(func=cmd_devices)
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
