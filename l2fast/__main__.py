"""python -m l2fast [bench ...]: the configuration, or the benchmark."""
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        from .bench.cli import main as bench_main
        return bench_main(argv[1:])
    if argv and argv[0] not in ("config", "show-config"):
        print("usage: python -m l2fast [config | bench [options]]", file=sys.stderr)
        return 2
    from . import show_config
    show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
