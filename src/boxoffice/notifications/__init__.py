"""Notifications: in-app messages, email (Jinja2 templates, per locale) and SMS.

`service.notify` is called inside the transaction of the event (a booking confirmed, a refund
done...): it writes the in-app row there and enqueues one job per external channel, so a
rollback sends nothing. `jobs` renders and sends; `channels` are the email and SMS senders.
"""
