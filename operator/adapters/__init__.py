"""Adapters: I/O only. The clients, mirrors and writes through which the operator reaches
the hub and the member clusters; they take bodies and plans, they do not build them."""
