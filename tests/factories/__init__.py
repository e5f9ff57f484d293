"""Tiny random-weight model factories: ``make_<name>(out_dir: Path) -> None``."""
