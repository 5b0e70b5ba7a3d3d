"""Live order books from the exchanges' public websockets into journals (issue #12)."""
