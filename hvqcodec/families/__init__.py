"""Model families, one subpackage each: its float model, its integer-exact twin, its pipeline
(the `hvqcodec.family.FamilyModel` the codec runs), its weights file and, where it has one,
its encoder-side refinement. A family imports the shared modules of `hvqcodec`, never another
family; `hvqcodec.models` registers each by the format of its weights file.

- `vqvae`: hvq-v1, hvq-v2. Hierarchical VQ-VAE levels, every stream a code map.
- `hyper`: hvq-v3, hvq-v3.1, hvq-v4. VQ levels as side information for integer fine symbols.
"""
