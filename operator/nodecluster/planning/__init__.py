"""Pure planning: from what is declared and what is observed to what should be done.

Nothing in this package performs I/O or reads a clock; time and randomness come in as
arguments. That is what makes every rule here testable with a table of cases, and what
lets the controllers stay thin.
"""
