import psycopg
def test_pg(postgres_url, fresh_postgres_url):
    with psycopg.connect(postgres_url) as c:
        assert c.execute("select 1").fetchone()[0] == 1
    with psycopg.connect(fresh_postgres_url) as c:
        assert c.execute("select current_database()").fetchone()[0].startswith("t_")
