"""``core-rerank heads show``: list the shipped head presets or print one (``plot``/``select``: cli.detect)."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> Any:
    """Add the ``heads`` group with ``show``; returns the group so other modules add their actions."""
    group = commands.add_parser("heads", help="show, plot or select head configs").add_subparsers(metavar="ACTION")
    p = group.add_parser("show", help="print a head config (preset name or JSON path)")
    p.add_argument("name", nargs="?", help="preset name or path; omit to list presets")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_show)
    return group


def run_show(args: argparse.Namespace) -> int:
    from ..head_config import HeadConfig, preset_names

    if not args.name:
        for name in preset_names():
            config = HeadConfig.load(name)
            print(f"{name:<42} {config.method:<4} {len(config.heads):>3} heads  {', '.join(config.model_ids)}")
        return 0
    config = HeadConfig.load(args.name)
    if args.json:
        print(config.to_json(), end="")
        return 0
    print(f"name:        {config.name}")
    print(f"models:      {', '.join(config.model_ids) or '-'}")
    if config.architecture:
        a = config.architecture
        print(
            f"architecture: {a.num_hidden_layers} layers x {a.num_attention_heads} heads "
            f"({a.num_key_value_heads} KV heads)"
        )
    print(f"method:      {config.method}")
    print(f"heads:       {' '.join(f'({layer},{head})' for layer, head in config.heads)}")
    if config.heads:
        print(f"layers built: {config.num_layers_needed()} (deepest head in layer {config.deepest_layer})")
    provenance = config.provenance.model_dump(exclude_none=True)
    bulky = [key for key, value in provenance.items() if isinstance(value, (dict, list)) and len(value) > 8]
    for key in bulky:  # e.g. detection's per-head score table: see --json for everything
        provenance[key] = f"<{len(provenance[key])} entries; see --json>"
    print(f"provenance:  {provenance}")
    return 0
