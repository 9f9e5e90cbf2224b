"""Architectures of victims and knockoffs: the paper's ResNets and small-scale nets, timm models,
and optional ``torch.compile``."""
