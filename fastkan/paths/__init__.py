"""The evaluation paths of the spline ``basis(u).flatten(-2) @ weight.T``, one module each.

``fastkan.dispatch`` chooses among them (``fastkan.explain.PATHS`` lists them in that order):
``small`` (a small call's whole layer as one autograd node), ``compiled`` (TorchInductor reductions
for one-output layers), ``rows`` (row blocks), ``local`` (compact bases), ``triton_spline`` (CUDA)
and ``fused`` (blocks of input features). What they share is in ``common``, ``one_output`` (the fused
blocks' one-output layout, also ``compiled``'s fallback) and ``higher`` (second derivatives); no path
imports another (tests/test_imports.py).
"""
