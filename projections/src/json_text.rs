//! JSON text bound as a `json` or `jsonb` parameter as it is: no parsing into values and
//! serializing them again on the way to Postgres.

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{accepts, to_sql_checked, IsNull, ToSql, Type};

/// Valid JSON text, sent as it is (for `jsonb`, behind the binary format's version byte).
#[derive(Debug, Clone, Copy)]
pub struct JsonText<'a>(pub &'a str);

impl ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1); // the jsonb binary format's version
        }
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    accepts!(JSON, JSONB);
    to_sql_checked!();
}
