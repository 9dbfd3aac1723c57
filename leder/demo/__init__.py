"""`leder demo`: a realistic caseload driven through the running system's real APIs and topics over
months of simulated time (see leder.demo.run)."""
