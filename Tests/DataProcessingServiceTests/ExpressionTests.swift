@testable import DataProcessingService
import Testing

@Suite struct ExpressionLanguage {
    static let fields = ["a", "b", "name", "price", "qty", "flag", "field with space", "user.id"]
    static let row: [Value] = [.int(7), .double(2.5), .string("  Ann Lee "), .double(19.99), .int(3), .bool(true), .string("s"), .int(42)]

    func eval(_ text: String) throws -> Value {
        try Expression(text, fields: Self.fields).evaluate(Self.row)
    }

    @Test func precedenceAndAssociativity() throws {
        #expect(try eval("1 + 2 * 3") == .int(7))
        #expect(try eval("(1 + 2) * 3") == .int(9))
        #expect(try eval("10 - 4 - 3") == .int(3))
        #expect(try eval("2 * 3 % 4") == .int(2))
        #expect(try eval("-a + 10") == .int(3))
        #expect(try eval("- -a") == .int(7))
        #expect(try eval("7 / 2") == .double(3.5))
        #expect(try eval("a % 4 * 2") == .int(6))
        #expect(try eval("1 + 2 < 4 and 3 > 2 or false") == .bool(true))
        #expect(try eval("not 1 > 2 and 2 > 1") == .bool(true))
        #expect(try eval("false and true or true") == .bool(true))   // and binds tighter than or
        #expect(try eval("true or true and false") == .bool(true))
        #expect(try eval("price * qty") == .double(19.99 * 3))
        #expect(try eval("a = 7 && flag") == .bool(true))
        #expect(try eval("a <> 7 || !flag") == .bool(false))
        #expect(try eval("`field with space` + 'x'") == .string("sx"))
        #expect(try eval("user.id * 2") == .int(84))
    }

    @Test func literalsAndNulls() throws {
        #expect(try eval("'it\\'s' + \"\\\"q\\\"\"") == .string("it's\"q\""))
        #expect(try eval("1.5e2 + .5") == .double(150.5))
        #expect(try eval("null + 1") == .null)
        #expect(try eval("null = null") == .bool(true))
        #expect(try eval("a = null") == .bool(false))
        #expect(try eval("a > null") == .null)
        #expect(try eval("null and false") == .bool(false))
        #expect(try eval("null or true") == .bool(true))
        #expect(try eval("null or false") == .null)
        #expect(try eval("1 / 0") == .null)
        #expect(try eval("5 % 0") == .null)
        #expect(try eval("1 = 1.0") == .bool(true))
        #expect(try eval("9223372036854775807 + 1") == .double(9223372036854775808.0))
        #expect(try eval("TRUE AND Not FALSE") == .bool(true))
    }

    @Test func functions() throws {
        #expect(try eval("round(price)") == .int(20))
        #expect(try eval("round(2.5)") == .int(3))
        #expect(try eval("round(-2.5)") == .int(-3))
        #expect(try eval("round(price, 1)") == .double(20.0))
        #expect(try eval("round(1.2345, 2)") == .double(1.23))
        #expect(try eval("floor(b) + ceil(b)") == .int(5))
        #expect(try eval("abs(-a)") == .int(7))
        #expect(try eval("abs(-2.5)") == .double(2.5))
        #expect(try eval("sqrt(16)") == .double(4))
        #expect(try eval("min(3, a, 1.5)") == .double(1.5))
        #expect(try eval("max(3, a, null)") == .int(7))
        #expect(try eval("lower(trim(name))") == .string("ann lee"))
        #expect(try eval("upper(name)") == .string("  ANN LEE "))
        #expect(try eval("len(name)") == .int(10))
        #expect(try eval("len('héllo')") == .int(5))
        #expect(try eval("concat(a, '-', null, b, flag)") == .string("7-2.5true"))
        #expect(try eval("substr('abcdef', 2, 3)") == .string("cde"))
        #expect(try eval("substr('abc', 5)") == .string(""))
        #expect(try eval("contains(name, 'Lee') and starts_with(trim(name), 'Ann') and ends_with(name, ' ')") == .bool(true))
        #expect(try eval("coalesce(null, null, 'x')") == .string("x"))
        #expect(try eval("if(a > 5, 'big', 'small')") == .string("big"))
        #expect(try eval("is_null(null) and not is_null(a)") == .bool(true))
        #expect(try eval("str(a) + str(1.5)") == .string("71.5"))
        #expect(try eval("num(' 12 ') + 1") == .int(13))
        #expect(try eval("num('x')") == .null)
        #expect(try eval("timestamp('2026-11-23 17:02:14')") == .string("2026-11-23T17:02:14.000Z"))
        #expect(try eval("hour(1700000000)") == .int(22))
        #expect(try eval("weekday('2026-11-23')") == .string("monday"))
        #expect(try eval("date(1700000000000)") == .string("2023-11-14"))
    }

    @Test func syntaxErrorsCarryPositions() {
        func error(_ text: String) -> ExpressionError? {
            do { _ = try Expression(text, fields: Self.fields); return nil } catch { return error }
        }
        #expect(error("a +")?.position == 4)
        #expect(error("a +")?.message == "unexpected end of expression")
        #expect(error("(a + 1")?.position == 7)
        #expect(error("(a + 1")?.message == "expected ')'")
        #expect(error("a + nope * 2")?.position == 5)
        #expect(error("a + nope * 2")?.message.hasPrefix("unknown field 'nope'") == true)
        #expect(error("foo(1)")?.message.hasPrefix("unknown function 'foo'") == true)
        #expect(error("round(1, 2, 3)")?.message == "round() takes 1 to 2 arguments, got 3")
        #expect(error("a # 1")?.position == 3)
        #expect(error("'open")?.message == "unterminated string")
        #expect(error("1 < 2 < 3")?.position == 7)
        #expect(error("a 1")?.position == 3)
        #expect(error("")?.message == "empty expression")
        #expect(error("'é' + #")?.position == 7)   // positions count characters, not bytes
        #expect(error(String(repeating: "(", count: 200) + "1" + String(repeating: ")", count: 200))?.message.contains("deeper") == true)
        #expect(error(String(repeating: "-", count: 500) + "1")?.message.contains("deeper") == true)
    }

    @Test func typeErrorsCarryPositions() {
        func error(_ text: String) -> EvaluationError? {
            guard let expression = try? Expression(text, fields: Self.fields) else { return nil }
            do throws(EvaluationError) { _ = try expression.evaluate(Self.row); return nil } catch { return error }
        }
        #expect(error("name * 2")?.position == 6)
        #expect(error("name * 2")?.message == "'*' needs numbers, got string and int")
        #expect(error("a and true")?.message == "'and' needs booleans, got int")
        #expect(error("1 + (name < 3)")?.position == 11)
        #expect(error("lower(a)")?.message == "lower() needs a string, got int")
        #expect(error("not a")?.position == 1)
    }
}
