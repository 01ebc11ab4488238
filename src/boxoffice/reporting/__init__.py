"""Analytics (SQL aggregates over bookings, seats and snacks) and reports as PDF, XLSX, CSV."""
