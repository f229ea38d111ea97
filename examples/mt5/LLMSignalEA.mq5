//+------------------------------------------------------------------+
//| LLMSignalEA.mq5                                                   |
//| Trades the signal of an llmsignal prediction server.             |
//|                                                                   |
//| On each new bar it sends the last InpBars closed bars (times and |
//| OHLC, oldest first) to `llmsignal serve` and trades the answer:   |
//| signal 1 = long, -1 = short, 0 = flat, one position of InpLots.   |
//| The request body, exactly:                                        |
//|   {"timestamps":[1704196800,...],"close":[1.10312,...],           |
//|    "open":[...],"high":[...],"low":[...]}                         |
//| An entry tuned with --inputs ohlc reads the ranges; a close-only  |
//| entry ignores them (InpSendOHLC=false sends closes only).         |
//| See README.md next to this file.                                  |
//+------------------------------------------------------------------+
#property copyright "llmsignal"
#property version   "1.00"
#property description "Sends closed bars to an llmsignal prediction server and trades its signal."

#include <Trade\Trade.mqh>

input string InpUrl       = "http://127.0.0.1:8000/predict"; // Server URL (allow it: Tools > Options > Expert Advisors)
input string InpApiKey    = "";       // API key, sent as X-API-Key (empty if the server has none)
input int    InpBars      = 100;      // Closed bars to send (at least the entry's min_bars, see GET /health)
input double InpLots      = 0.01;     // Fixed lot size
input int    InpTimeoutMs = 5000;     // WebRequest timeout (ms)
input int    InpRetrySec  = 10;       // After a failed request, wait this long before the next try
input ulong  InpMagic     = 26050101; // Magic number of this EA's positions
input int    InpSlippage  = 10;       // Maximum price deviation (points)
input bool   InpSendOHLC  = true;     // Send open/high/low too (needed by an entry tuned with --inputs ohlc)

CTrade   g_trade;
datetime g_lastBar  = 0;  // open time of the bar whose signal was last traded
ulong    g_failedAt = 0;  // GetTickCount64() of the last failed request, 0 when the last one succeeded

//+------------------------------------------------------------------+
int OnInit()
  {
   if(MQLInfoInteger(MQL_TESTER))
     {
      Print("LLMSignalEA: WebRequest does not work in the Strategy Tester; attach the EA to a chart instead");
      return(INIT_FAILED);
     }
   if(InpBars < 2 || InpLots <= 0.0)
     {
      Print("LLMSignalEA: InpBars must be at least 2 and InpLots positive");
      return(INIT_PARAMETERS_INCORRECT);
     }
   g_trade.SetExpertMagicNumber(InpMagic);
   g_trade.SetDeviationInPoints(InpSlippage);
   return(INIT_SUCCEEDED);
  }

//+------------------------------------------------------------------+
//| Once per bar: the bar that just closed is the last one sent.     |
//+------------------------------------------------------------------+
void OnTick()
  {
   datetime bar = iTime(_Symbol, _Period, 0);
   if(bar == 0 || bar == g_lastBar)
      return;
   // a server that is down is retried every InpRetrySec seconds, not on every tick
   if(g_failedAt != 0 && GetTickCount64() - g_failedAt < (ulong)InpRetrySec * 1000)
      return;
   int signal = 0;
   if(!RequestSignal(signal))
     {
      g_failedAt = GetTickCount64();
      return;
     }
   g_failedAt = 0;
   g_lastBar  = bar;
   TradeSignal(signal);
  }

//+------------------------------------------------------------------+
//| The request body: closed bars only (from shift 1), oldest first. |
//+------------------------------------------------------------------+
bool BuildBody(string &body)
  {
   MqlRates rates[];
   ArraySetAsSeries(rates, false); // index 0 = oldest bar, as the server expects
   int copied = CopyRates(_Symbol, _Period, 1, InpBars, rates);
   if(copied < InpBars)
     {
      PrintFormat("LLMSignalEA: only %d of %d closed bars available yet", copied, InpBars);
      return(false);
     }
   body = "{\"timestamps\":[";
   for(int i = 0; i < copied; i++)
     {
      if(i > 0)
         body += ",";
      body += IntegerToString((long)rates[i].time); // Unix seconds (server time; only the order matters)
     }
   body += "]";
   AppendPrices(body, "close", rates, copied);
   if(InpSendOHLC)
     {
      AppendPrices(body, "open", rates, copied);
      AppendPrices(body, "high", rates, copied);
      AppendPrices(body, "low", rates, copied);
     }
   body += "}";
   return(true);
  }

//+------------------------------------------------------------------+
//| ,"name":[...] of one price of each bar.                          |
//+------------------------------------------------------------------+
void AppendPrices(string &body, string name, const MqlRates &rates[], int count)
  {
   body += ",\"" + name + "\":[";
   for(int i = 0; i < count; i++)
     {
      if(i > 0)
         body += ",";
      double price = name == "open" ? rates[i].open : name == "high" ? rates[i].high
                     : name == "low" ? rates[i].low : rates[i].close;
      body += DoubleToString(price, _Digits);
     }
   body += "]";
  }

//+------------------------------------------------------------------+
//| POST the bars; true with the server's signal (-1, 0 or 1).       |
//+------------------------------------------------------------------+
bool RequestSignal(int &signal)
  {
   string body;
   if(!BuildBody(body))
      return(false);
   char post[], result[];
   int written = StringToCharArray(body, post, 0, WHOLE_ARRAY, CP_UTF8);
   // StringToCharArray appends a NUL byte; sent along, the server would reject the body as invalid JSON
   if(written > 0 && post[written - 1] == 0)
      written--;
   ArrayResize(post, written);
   string headers = "Content-Type: application/json\r\n";
   if(InpApiKey != "")
      headers += "X-API-Key: " + InpApiKey + "\r\n";
   string resultHeaders;
   ResetLastError();
   int status = WebRequest("POST", InpUrl, headers, InpTimeoutMs, post, result, resultHeaders);
   if(status == -1)
     {
      int error = GetLastError();
      if(error == 4014)
         PrintFormat("LLMSignalEA: WebRequest refused: add %s in Tools > Options > Expert Advisors > "
                     "'Allow WebRequest for listed URL'", InpUrl);
      else
         PrintFormat("LLMSignalEA: WebRequest failed (error %d): is `llmsignal serve` running?", error);
      return(false);
     }
   string answer = CharArrayToString(result, 0, WHOLE_ARRAY, CP_UTF8);
   if(status != 200)
     {
      // a 4xx says what was wrong in its "detail", e.g. too few bars for the model's context
      PrintFormat("LLMSignalEA: server answered HTTP %d: %s", status, answer);
      return(false);
     }
   double value = 0.0, forecast = 0.0, pUp = 0.0;
   if(!JsonNumber(answer, "signal", value) || (value != -1.0 && value != 0.0 && value != 1.0))
     {
      PrintFormat("LLMSignalEA: no valid signal in the answer: %s", answer);
      return(false);
     }
   signal = (int)value;
   JsonNumber(answer, "forecast", forecast);
   JsonNumber(answer, "p_up", pUp);
   PrintFormat("LLMSignalEA: %s close %s forecast %s p_up %.3f signal %d", _Symbol,
               DoubleToString(iClose(_Symbol, _Period, 1), _Digits), DoubleToString(forecast, _Digits), pUp, signal);
   return(true);
  }

//+------------------------------------------------------------------+
//| The number after "key": in a flat JSON object (the server's).    |
//+------------------------------------------------------------------+
bool JsonNumber(const string json, const string key, double &value)
  {
   int at = StringFind(json, "\"" + key + "\"");
   if(at < 0)
      return(false);
   at = StringFind(json, ":", at);
   if(at < 0)
      return(false);
   int length = StringLen(json);
   at++;
   while(at < length && StringGetCharacter(json, at) == ' ')
      at++;
   int end = at;
   while(end < length)
     {
      ushort c = StringGetCharacter(json, end);
      if((c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E')
         end++;
      else
         break;
     }
   if(end == at)
      return(false);
   value = StringToDouble(StringSubstr(json, at, end - at));
   return(true);
  }

//+------------------------------------------------------------------+
//| Hold one position in the signal's direction: close the opposite  |
//| side (everything when the signal is 0), then open if none left.  |
//+------------------------------------------------------------------+
void TradeSignal(const int signal)
  {
   bool haveLong = false, haveShort = false;
   for(int i = PositionsTotal() - 1; i >= 0; i--)
     {
      ulong ticket = PositionGetTicket(i);
      if(ticket == 0 || PositionGetString(POSITION_SYMBOL) != _Symbol
         || (ulong)PositionGetInteger(POSITION_MAGIC) != InpMagic)
         continue;
      long type = PositionGetInteger(POSITION_TYPE);
      if(type == POSITION_TYPE_BUY && signal == 1)
        {
         haveLong = true;
         continue;
        }
      if(type == POSITION_TYPE_SELL && signal == -1)
        {
         haveShort = true;
         continue;
        }
      if(!g_trade.PositionClose(ticket))
         PrintFormat("LLMSignalEA: could not close position %s: %s", IntegerToString((long)ticket),
                     g_trade.ResultRetcodeDescription());
     }
   if(signal == 1 && !haveLong && !g_trade.Buy(InpLots, _Symbol))
      PrintFormat("LLMSignalEA: buy failed: %s", g_trade.ResultRetcodeDescription());
   if(signal == -1 && !haveShort && !g_trade.Sell(InpLots, _Symbol))
      PrintFormat("LLMSignalEA: sell failed: %s", g_trade.ResultRetcodeDescription());
  }
//+------------------------------------------------------------------+
