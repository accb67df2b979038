"""birdemb app: a local web app over a feature store (look, listen, search, label, retrain)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("app", help="browse, hear, search, label and retrain in a local web app")
    p.add_argument("--store", required=True, help="feature store folder (read only)")
    p.add_argument("--run", help="a train-head run directory: its head scores the windows, its metrics are "
                                 "the 'previous' ones beside a retrain's")
    p.add_argument("--audio", action="append", default=[],
                   help="another folder audio may be played from (default: only the store's recorded audio folders)")
    p.add_argument("--workdir", default="birdemb-app",
                   help="where the labels (annotations.csv) and new runs go (birdemb-app; never the store)")
    p.add_argument("--model", help="the store's model to show (default: the run's embeddings, or one with logits)")
    p.add_argument("--taxonomy", help="eBird_Taxonomy_v2021.csv to name BirdNET's species by eBird codes")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    p.set_defaults(func=run)


def app_command(args) -> tuple[list[str], dict]:
    """The `streamlit run` command line and its environment."""
    import birdemb.explore.app as app_package
    from birdemb.explore.app.data import AppConfig

    script = Path(app_package.__file__).with_name("streamlit_app.py")  # not imported: it draws the page

    config = AppConfig(str(Path(args.store).resolve()), str(Path(args.run).resolve()) if args.run else None,
                       [str(Path(a).resolve()) for a in args.audio], str(Path(args.workdir).resolve()),
                       args.model, args.taxonomy)
    argv = [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", args.host,
            "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--client.toolbarMode", "viewer"]
    return argv, {**os.environ, "BIRDEMB_APP": config.to_json()}


def run(args) -> int:
    from birdemb.store import StoreError, partitions

    partitions(args.store)  # not a store: one error line now, not a page later
    if args.run and not Path(args.run, "config.json").is_file():
        raise StoreError(f"{args.run}: not a run directory (no config.json)")
    argv, env = app_command(args)
    print(f"birdemb app on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    return serve(argv, env)


def serve(argv: list[str], env: dict) -> int:
    """Run the server until it exits, or until this process is stopped: Ctrl-C, SIGTERM (a
    supervisor, `kill`) and even SIGKILL end the server too, so none is left holding the port."""
    from birdemb.runtime.lifecycle import interruptible, interruption, kill_me_with_parent_thread

    process = subprocess.Popen(argv, env=env, preexec_fn=kill_me_with_parent_thread)
    try:
        with interruptible():
            return process.wait()
    except KeyboardInterrupt as interrupt:
        reason, status = interruption(interrupt)
        print(f"birdemb app: stopped by {reason}", file=sys.stderr)
        return status
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def main(argv: list[str] | None = None) -> int:
    """`python -m birdemb.commands.app ...`: the same command without the full command line."""
    import argparse

    parser = argparse.ArgumentParser(prog="birdemb")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["app", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
