"""Distribution: film distributors, rental contracts (weekly sliding-scale terms, a house
allowance, a minimum guarantee) and the weekly settlements owed under them."""
