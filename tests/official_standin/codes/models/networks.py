"""``define_G(opt)`` as the official repositories."""

import importlib


def define_G(opt):
    # imported lazily, as HCFlow's and SRFlow's define_G do
    arch = importlib.import_module("models.modules.Standin_arch")
    return arch.StandinNet(opt)
