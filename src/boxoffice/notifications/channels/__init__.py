"""How a rendered notification leaves: email (`email.py`) and SMS (`sms.py`)."""
