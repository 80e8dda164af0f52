//! Compiling one expression (a condition or the score): bounds, parsing, static checks and the
//! dry run, in that order; each later step runs only when the earlier ones found nothing.

use cel::common::ast::SourceInfo;
use cel::parser::{Expression, ParseError, ParseErrors};
use cel::{Context, Env};
use gatehouse_events::rules::AttributeSchema;

use crate::check::check;
use crate::dry_run::{dry_run, Expect};
use crate::error::{RuleError, RuleErrorCode};
use crate::item::Item;

/// Longest condition or score expression, in characters.
pub const MAX_EXPRESSION_CHARS: usize = 2_000;
/// Deepest nesting of sub-expressions (parentheses, calls, lists) cel's parser accepts.
pub const MAX_NESTING_DEPTH: u16 = 32;

/// Where an expression sits in the document, for its errors.
pub(crate) struct Site<'s> {
    pub location: &'s str,
    pub rule_id: Option<&'s str>,
}

impl Site<'_> {
    fn error(&self, code: RuleErrorCode, message: impl Into<String>) -> RuleError {
        RuleError::new(code, self.location, self.rule_id, message)
    }
}

/// Compiles the expressions of one document against one schema.
pub(crate) struct Compiler<'c> {
    pub env: &'c Env,
    pub root: &'c Context<'c, 'c>,
    pub schema: &'c AttributeSchema,
    pub samples: &'c [Item<'c>],
}

impl Compiler<'_> {
    /// The parsed expression, or `None` after pushing what is wrong with it to `errors`.
    pub(crate) fn compile(
        &self,
        source: &str,
        expect: Expect,
        site: &Site<'_>,
        errors: &mut Vec<RuleError>,
    ) -> Option<Expression> {
        if source.trim().is_empty() {
            errors.push(site.error(RuleErrorCode::EmptyExpression, "the expression is empty"));
            return None;
        }
        let chars = source.chars().count();
        if chars > MAX_EXPRESSION_CHARS {
            let message = format!(
                "the expression has {chars} characters, at most {MAX_EXPRESSION_CHARS} allowed"
            );
            errors.push(site.error(RuleErrorCode::TooLarge, message));
            return None;
        }
        let parser = self.env.parser().max_recursion_depth(MAX_NESTING_DEPTH);
        let (expr, info) = match parser.parse_with_source_info(source) {
            Ok(parsed) => parsed,
            Err(parse_errors) => {
                errors.push(parse_error(&parse_errors, site));
                return None;
            }
        };
        let findings = check(&expr, self.schema);
        if !findings.is_empty() {
            errors.extend(findings.into_iter().map(|finding| {
                site.error(finding.code, finding.message)
                    .at(position(&info, finding.id))
            }));
            return None;
        }
        if let Some(problem) = dry_run(&expr, expect, self.root, self.samples) {
            let at = problem.id.and_then(|id| position(&info, id));
            errors.push(site.error(problem.code, problem.message).at(at));
            return None;
        }
        Some(expr)
    }
}

/// The first parse error (later ones mostly follow from it), or the nesting limit if hit.
fn parse_error(parse_errors: &ParseErrors, site: &Site<'_>) -> RuleError {
    let too_deep = parse_errors
        .errors
        .iter()
        .find(|e| e.msg.contains("Recursion limit"));
    if let Some(e) = too_deep {
        let message = format!("the expression nests deeper than {MAX_NESTING_DEPTH} levels");
        return site
            .error(RuleErrorCode::TooLarge, message)
            .at(parse_position(e));
    }
    let Some(first) = parse_errors.errors.first() else {
        return site.error(RuleErrorCode::SyntaxError, "syntax error");
    };
    // cel renders `ERROR: <input>:1:10: Syntax error: ...` plus the source line and a caret;
    // the position has fields of its own, so keep the text after it.
    let text = first.to_string();
    let prefix = format!("ERROR: <input>:{}:{}: ", first.pos.0, first.pos.1);
    let message = text.strip_prefix(&prefix).unwrap_or(&text).to_owned();
    site.error(RuleErrorCode::SyntaxError, message)
        .at(parse_position(first))
}

fn parse_position(e: &ParseError) -> Option<(u32, u32)> {
    let line = u32::try_from(e.pos.0).ok().filter(|&l| l > 0)?;
    let column = u32::try_from(e.pos.1).ok().filter(|&c| c > 0)?;
    Some((line, column))
}

/// The 1-based line and column (in characters, as cel's parse errors count) of node `id`;
/// cel records node offsets in bytes.
fn position(info: &SourceInfo, id: u64) -> Option<(u32, u32)> {
    let (start, _) = info.offset_for(id)?;
    let before = info.source.get(..usize::try_from(start).ok()?)?;
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    Some((u32::try_from(line).ok()?, u32::try_from(column).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_position(source: &str, pick: impl Fn(&Expression) -> u64) -> Option<(u32, u32)> {
        let (expr, info) = Env::stdlib()
            .parser()
            .parse_with_source_info(source)
            .unwrap();
        position(&info, pick(&expr))
    }

    fn second_arg(e: &Expression) -> u64 {
        match &e.expr {
            cel::common::ast::Expr::Call(call) => call.args[1].id,
            other => panic!("not a call: {other:?}"),
        }
    }

    #[test]
    fn a_node_position_counts_columns_in_characters() {
        assert_eq!(offset_position("\"éé\" == x", second_arg), Some((1, 9)));
    }

    #[test]
    fn a_node_position_counts_lines() {
        assert_eq!(offset_position("1 ==\n  x", second_arg), Some((2, 3)));
    }
}
