"""Reviews and ratings: customers who saw a movie (a checked-in ticket) rate and review it once,
edit their review, vote others' reviews helpful; staff hide abusive ones. The movie's
`average_rating` and `review_count` are kept in step in the same transaction."""
