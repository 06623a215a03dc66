"""Released-checkpoint commands (issue 17): import the authors' Lumos_I2I.pth / Lumos_T2I.pth."""

from __future__ import annotations

import json


def cmd_import_released(args):
    """Convert a released Lumos checkpoint (flat .pth state dict) into a LumosDiT folder (strict: every key
    mapped, shapes and position table checked)."""
    from lumos.released import convert_released
    from lumos.utils import setup_logging, setup_torch

    setup_logging()
    setup_torch(args.threads)
    options = {} if args.num_heads is None else {"num_heads": args.num_heads}
    model = convert_released(args.checkpoint, args.kind, **options)
    model.save_pretrained(args.out)
    print(json.dumps({"checkpoint": args.checkpoint, "kind": args.kind, "out": args.out,
                      "tensors": len(model.state_dict()), "config": dict(model.config)}))


def register(add):
    req = {"required": True}
    add("import-released", cmd_import_released, config=False,
        checkpoint=("the released .pth (config key released.i2i / released.t2i will point at it)", req),
        kind=("i2i | t2i", {"required": True, "choices": ["i2i", "t2i"]}),
        out=("output LumosDiT folder (save_pretrained)", req),
        num_heads=("attention heads, when the depth / width is not a DiT size (DiT-XL/2: 16)",
                   {"type": int, "default": None}),
        threads=("torch CPU threads (default: all)", {"type": int, "default": None}))
