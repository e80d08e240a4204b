"""How a visit ends, given the hidden state of a synthetic household (the visit outcome model).

Shared by the generator's past outreach rounds and the simulated field work of
``outreach simulate``, so both draw outcomes the same way.
"""
