"""RobustDistiller: noise-invariant student features by distillation plus denoising.

A package of this project (no installed ``espnet2.distill`` exists). See
``docs/robust_distiller.md`` for the method, the modules and the recipe.
"""
