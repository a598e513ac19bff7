"""The API's routers, in the order they are mounted."""
