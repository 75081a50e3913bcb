"""Size and precision limits of the grader (every bound is decided by the input, before expensive work)."""

MAX_RESPONSE_CHARS = 20_000  # tail of the response that is scanned (final answers are at the end)
MAX_ANSWER_CHARS = 1_000  # longest extracted answer accepted
MAX_SYMBOLIC_CHARS = 400  # longest normalized answer handed to sympy / Math-Verify
MAX_NUMBER_DIGITS = 400  # longest digit string read as a number
MAX_EXPONENT = 5_000  # largest literal exponent allowed in symbolic work
MAX_FACTORIAL = 1_000  # largest literal factorial operand allowed in symbolic work
MAX_ELEMENTS = 64  # most elements compared in a tuple / set / list
REL_TOL = 1e-4  # relative tolerance for inexact numbers
MAX_NESTING = 6  # deepest bracket nesting handed to sympy (nested / continued fractions, nested calls)
MAX_PAREN_NESTING = 3  # deepest parenthesis nesting handed to sympy
MAX_FUNCTIONS = 12  # most function-like commands (\sqrt, \frac, \sin, ...) handed to sympy
MAX_TOKENS = 160  # most tokens (commands, numbers, letters, operators) handed to sympy
MAX_VERIFY_TOKENS = 60  # most tokens per side handed to Math-Verify's verify (the last-resort check)
